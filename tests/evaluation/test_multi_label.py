"""Tests of multi-label scoring: thresholds, the report, predictions and the loss weights."""

import csv

import numpy as np
import pytest
from sklearn.metrics import f1_score

from tf_finetune.evaluation import multi_label, scoring
from tf_finetune.modeling import losses
from tf_finetune.serving import compare

NAMES = ["a", "b", "c"]


def test_tuned_thresholds_maximise_each_labels_f1():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 2, (200, 3))
    # Label a's scores separate at 0.8, b's at 0.3; c never occurs.
    scores = np.stack(
        [
            np.where(truth[:, 0], rng.uniform(0.8, 1, 200), rng.uniform(0, 0.7, 200)),
            np.where(truth[:, 1], rng.uniform(0.3, 0.6, 200), rng.uniform(0, 0.25, 200)),
            rng.uniform(0, 1, 200),
        ],
        axis=1,
    )
    truth[:, 2] = 0
    thresholds = multi_label.tune_thresholds(truth, scores)
    assert 0.7 < thresholds[0] <= 0.8 and 0.25 < thresholds[1] <= 0.3
    assert thresholds[2] == 0.5
    chosen = multi_label.predicted(scores, thresholds)
    assert f1_score(truth[:, :2], chosen[:, :2], average=None).tolist() == [1.0, 1.0]
    for label in range(2):  # no other threshold does better
        for other in np.linspace(0.05, 0.95, 19):
            worse = f1_score(truth[:, label], scores[:, label] >= other)
            assert worse <= f1_score(truth[:, label], chosen[:, label])


def test_the_report_is_scikit_learns_with_exact_match_and_counts():
    truth = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1]])
    scores = np.array([[0.9, 0.2, 0.6], [0.1, 0.7, 0.4], [0.8, 0.3, 0.1], [0.2, 0.1, 0.45]])
    report = scoring.build_report(truth, scores, NAMES)
    chosen = scores >= 0.5
    for average in ("micro", "macro", "weighted", "samples"):
        expected = f1_score(truth, chosen, average=average, zero_division=0)
        assert report[f"{average} avg"]["f1-score"] == pytest.approx(expected)
    assert report["exact_match"] == report["accuracy"] == 0.5
    assert report["label_confusion"]["b"] == {"tn": 2, "fp": 0, "fn": 1, "tp": 1}
    assert report["thresholds"] == {"tuned": False, "values": [0.5, 0.5, 0.5]}
    tuned = scoring.build_report(truth, scores, NAMES, [0.5, 0.25, 0.42])
    assert tuned["exact_match"] == 1.0 and tuned["thresholds"]["tuned"]
    assert "thresholds tuned on validation" in scoring.format_report(
        truth, scores, NAMES, [0.5, 0.25, 0.42]
    )


def test_windows_take_each_labels_highest_probability():
    scores = np.array([[0.1, 0.9], [0.7, 0.2], [0.4, 0.4]])
    documents = np.array([0, 0, 1])
    assert scoring.per_text(scores, documents, multi_label=True).tolist() == [
        [0.7, 0.9],
        [0.4, 0.4],
    ]
    np.testing.assert_allclose(scoring.per_text(scores, documents), [[0.4, 0.55], [0.4, 0.4]])


def test_predictions_and_their_bootstrap_interval(tmp_path):
    rng = np.random.default_rng(1)
    truth = rng.integers(0, 2, (300, 3))
    scores = np.clip(truth * 0.7 + rng.uniform(0, 0.4, (300, 3)), 0, 1)
    path = tmp_path / "predictions.csv"
    scoring.write_predictions(path, [f"t{i}" for i in range(300)], truth, scores, NAMES)
    with path.open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert rows[0]["labels"] == multi_label.label_set(truth[0], NAMES)
    assert list(rows[0]) == ["text", "labels", "predicted", "p_a", "p_b", "p_c"]
    macro = f1_score(truth, scores >= 0.5, average="macro")
    low, high = compare._f1_interval(path)
    assert low <= macro <= high and high - low < 0.2


def test_balanced_weights_weigh_each_labels_positives():
    rows = np.array([[1, 0], [1, 0], [1, 1], [0, 0]])
    assert losses.class_weights("balanced", ["x", "y"], rows) == [1 / 3, 3.0]
    loss = losses.MultiLabelLoss([1.0, 3.0])
    unweighted = losses.MultiLabelLoss()
    logits = np.array([[0.0, 0.0]], np.float32)
    positive, negative = np.array([[0.0, 1.0]]), np.array([[0.0, 0.0]])
    assert float(loss.call(positive, logits)[0]) == pytest.approx(
        2 * float(unweighted.call(positive, logits)[0])
    )
    assert float(loss.call(negative, logits)[0]) == pytest.approx(
        float(unweighted.call(negative, logits)[0])
    )
