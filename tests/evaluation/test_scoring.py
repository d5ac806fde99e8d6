"""Tests of the classification report."""

import csv
import json

import numpy as np
import pytest
from sklearn.metrics import classification_report, f1_score

from tf_finetune.evaluation.scoring import (
    build_report,
    format_report,
    write_predictions,
    write_report,
)

NAMES = ["neg", "neutral", "pos"]
Y_TRUE = [0, 0, 2, 2, 2, 0]
PROBS = np.array([
    [0.8, 0.1, 0.1], [0.3, 0.6, 0.1], [0.1, 0.2, 0.7],
    [0.6, 0.1, 0.3], [0.2, 0.1, 0.7], [0.5, 0.2, 0.3],
])  # fmt: skip


def test_report_is_scikit_learns_with_matrix_and_labels():
    report = build_report(Y_TRUE, PROBS, NAMES)
    assert report["accuracy"] == pytest.approx(4 / 6)
    assert report["macro avg"]["f1-score"] == pytest.approx(
        f1_score(Y_TRUE, [0, 1, 2, 0, 2, 0], average="macro", labels=[0, 1, 2])
    )
    # A class nobody has still appears, with zero support.
    assert report["neutral"] == {"precision": 0.0, "recall": 0.0, "f1-score": 0.0, "support": 0.0}
    assert report["confusion_matrix"] == [[2, 1, 0], [0, 0, 0], [1, 0, 2]]
    assert report["labels"] == NAMES


def test_text_report_and_files(tmp_path):
    report = build_report(Y_TRUE, PROBS, NAMES)
    text = format_report(Y_TRUE, PROBS, NAMES)
    expected = classification_report(
        Y_TRUE, PROBS.argmax(1), labels=[0, 1, 2], target_names=NAMES, digits=4, zero_division=0
    )
    assert text.startswith(expected)
    assert text.splitlines()[-1].split() == ["pos", "1", "0", "2"]
    write_report(report, text, tmp_path)
    assert json.loads((tmp_path / "report.json").read_text()) == json.loads(json.dumps(report))
    assert (tmp_path / "report.txt").read_text() == text


def test_predictions_file(tmp_path):
    write_predictions(tmp_path / "p.csv", list("abcdef"), Y_TRUE, PROBS, NAMES)
    with open(tmp_path / "p.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert rows[1] == {
        "text": "b",
        "label": "neg",
        "predicted": "neutral",
        "p_neg": "0.300000",
        "p_neutral": "0.600000",
        "p_pos": "0.100000",
    }
