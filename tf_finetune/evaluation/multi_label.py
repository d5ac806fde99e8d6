"""Scoring multi-label predictions: thresholds, scikit-learn's report, predictions.

`y_true` is a 0/1 matrix `[examples, labels]` and `probabilities` each label's sigmoid.
A label is predicted where its probability reaches its threshold (0.5 unless tuned).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

DEFAULT_THRESHOLD = 0.5
SEPARATOR = "|"  # between the labels of a set, in predictions files
AVERAGES = ("micro avg", "macro avg", "weighted avg", "samples avg")


def predicted(probabilities: np.ndarray, thresholds=None) -> np.ndarray:
    """The predicted 0/1 matrix: each label where its probability reaches its threshold."""
    limits = DEFAULT_THRESHOLD if thresholds is None else np.asarray(thresholds)
    return (np.asarray(probabilities) >= limits).astype(np.int8)


def tune_thresholds(y_true, probabilities: np.ndarray) -> list[float]:
    """Each label's threshold that maximises its F1 on these examples.

    The candidates are the midpoints between the label's distinct probabilities; of
    equal F1s the one nearest 0.5 wins. A label with no positive example keeps 0.5.
    """
    y_true = np.asarray(y_true)
    thresholds = []
    for label in range(y_true.shape[1]):
        truth, scores = y_true[:, label] == 1, probabilities[:, label]
        if not truth.any():
            thresholds.append(DEFAULT_THRESHOLD)
            continue
        values = np.unique(scores)
        candidates = np.unique(np.r_[(values[1:] + values[:-1]) / 2, DEFAULT_THRESHOLD])
        chosen = scores[None, :] >= candidates[:, None]  # [candidates, examples]
        hits = (chosen & truth).sum(axis=1)
        f1 = 2 * hits / (chosen.sum(axis=1) + truth.sum())
        best = np.flatnonzero(f1 == f1.max())
        thresholds.append(float(candidates[best[np.argmin(abs(candidates[best] - 0.5))]]))
    return thresholds


def build_report(y_true, probabilities: np.ndarray, label_names: list[str], thresholds=None):
    """scikit-learn's multi-label report dict, plus the exact-match ratio and more.

    Per label and the micro, macro, weighted and samples averages, as
    `classification_report` gives them; `accuracy` and `exact_match` (the share of
    examples whose every label is right); `label_confusion` (each label's `tn`, `fp`,
    `fn`, `tp`); `labels`; `thresholds` (the ones used, and whether tuned).
    """
    from sklearn.metrics import accuracy_score, classification_report, multilabel_confusion_matrix

    y_true = np.asarray(y_true)
    y_pred = predicted(probabilities, thresholds)
    report = classification_report(
        y_true, y_pred, target_names=label_names, output_dict=True, zero_division=0
    )
    report["accuracy"] = report["exact_match"] = float(accuracy_score(y_true, y_pred))
    report["label_confusion"] = {
        name: dict(zip(("tn", "fp", "fn", "tp"), map(int, matrix.ravel()), strict=True))
        for name, matrix in zip(
            label_names, multilabel_confusion_matrix(y_true, y_pred), strict=True
        )
    }
    report["labels"] = list(label_names)
    report["thresholds"] = {
        "tuned": thresholds is not None,
        "values": [DEFAULT_THRESHOLD] * len(label_names)
        if thresholds is None
        else [float(t) for t in thresholds],
    }
    return report


def format_report(y_true, probabilities: np.ndarray, label_names: list[str], thresholds=None):
    """scikit-learn's text report, the exact-match ratio and each label's confusion counts."""
    from sklearn.metrics import classification_report

    report = build_report(y_true, probabilities, label_names, thresholds)
    text = classification_report(
        np.asarray(y_true),
        predicted(probabilities, thresholds),
        target_names=label_names,
        digits=4,
        zero_division=0,
    )
    width = max(7, *(len(n) for n in label_names))
    rows = [f"{'label':>{width}} {'threshold':>9} {'tp':>6} {'fp':>6} {'fn':>6} {'tn':>6}"]
    for name, limit in zip(label_names, report["thresholds"]["values"], strict=True):
        counts = report["label_confusion"][name]
        rows.append(
            f"{name:>{width}} {limit:>9.3f} "
            + " ".join(f"{counts[k]:>6d}" for k in ("tp", "fp", "fn", "tn"))
        )
    tuned = "tuned on validation" if thresholds is not None else "0.5 for every label"
    return (
        f"{text}\nExact match (every label right): {report['exact_match']:.4f}\n"
        f"Per label (thresholds {tuned}):\n" + "\n".join(rows) + "\n"
    )


def label_set(row, label_names: list[str]) -> str:
    """A 0/1 row's labels, joined by `SEPARATOR`."""
    return SEPARATOR.join(name for name, value in zip(label_names, row, strict=True) if value)


def write_predictions(path: Path, texts, y_true, probabilities, label_names, thresholds=None):
    """Writes one CSV row per example: text, true and predicted labels, each probability."""
    chosen = predicted(probabilities, thresholds)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "labels", "predicted", *(f"p_{n}" for n in label_names)])
        for text, true, row, probs in zip(texts, y_true, chosen, probabilities, strict=True):
            writer.writerow(
                [
                    text,
                    label_set(true, label_names),
                    label_set(row, label_names),
                    *(f"{p:.6f}" for p in probs),
                ]
            )
