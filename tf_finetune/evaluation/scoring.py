"""Predicting on an evaluation split and writing the scikit-learn classification report."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import tensorflow as tf
from sklearn.metrics import classification_report, confusion_matrix

from tf_finetune.evaluation import plots


def predict_logits(model, batches) -> np.ndarray:
    """Returns float32 logits `[N, C]` in split order.

    Args:
        model: A Keras classifier returning `logits`.
        batches: `tf_data.Batches` of an evaluation split (unshuffled).
    """
    features = batches.dataset.map(lambda x, y: x)
    logits = model.predict(features, verbose=0)["logits"]
    return batches.restore_order(np.asarray(logits, np.float32))


def probabilities_of(logits: np.ndarray) -> np.ndarray:
    """Softmax of float32 logits."""
    return tf.nn.softmax(logits, axis=-1).numpy()


def predict_probabilities(model, batches) -> np.ndarray:
    """Returns class probabilities `[N, C]` in split order (see `predict_logits`)."""
    return probabilities_of(predict_logits(model, batches))


def per_text(probabilities: np.ndarray, documents: np.ndarray | None) -> np.ndarray:
    """Each text's probabilities: the mean of its windows' (`documents`, ascending, names
    each window's text); `probabilities` as they are without windows."""
    if documents is None:
        return probabilities
    starts = np.flatnonzero(np.r_[True, np.diff(documents) != 0])
    counts = np.diff(np.r_[starts, len(documents)])
    return np.add.reduceat(probabilities, starts, axis=0) / counts[:, None]


def build_report(y_true, probabilities: np.ndarray, label_names: list[str]) -> dict:
    """Returns scikit-learn's report dict plus `confusion_matrix` and `labels`.

    Every class appears, including classes absent from `y_true` (their support is 0).
    """
    y_pred = probabilities.argmax(axis=-1)
    ids = list(range(len(label_names)))
    report = classification_report(
        y_true,
        y_pred,
        labels=ids,
        target_names=label_names,
        output_dict=True,
        zero_division=0,
    )
    report["confusion_matrix"] = confusion_matrix(y_true, y_pred, labels=ids).tolist()
    report["labels"] = list(label_names)
    return report


def format_report(y_true, probabilities: np.ndarray, label_names: list[str]) -> str:
    """Returns scikit-learn's text report followed by the labelled confusion matrix."""
    y_pred = probabilities.argmax(axis=-1)
    ids = list(range(len(label_names)))
    text = classification_report(
        y_true, y_pred, labels=ids, target_names=label_names, digits=4, zero_division=0
    )
    matrix = confusion_matrix(y_true, y_pred, labels=ids)
    heading = "Confusion matrix (rows: true label, columns: predicted)"
    kept = plots.most_confused(matrix)
    if len(kept) < len(ids):
        heading += (
            f", the {len(kept)} most confused of {len(ids)} classes; report.json has them all"
        )
        matrix = matrix[np.ix_(kept, kept)]
        label_names = [label_names[i] for i in kept]
    width = max(7, *(len(n) for n in label_names))
    rows = [f"{'':>{width}} " + " ".join(f"{n:>{width}}" for n in label_names)]
    rows += [
        f"{name:>{width}} " + " ".join(f"{v:>{width}d}" for v in row)
        for name, row in zip(label_names, matrix, strict=True)
    ]
    return f"{text}\n{heading}\n" + "\n".join(rows) + "\n"


def write_report(report: dict, text: str, directory: Path) -> None:
    """Writes `report.json` and `report.txt` into `directory`."""
    (directory / "report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    (directory / "report.txt").write_text(text, encoding="utf-8")


def write_predictions(path: Path, texts, y_true, probabilities, label_names) -> None:
    """Writes one CSV row per example: text, true and predicted label, each probability."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label", "predicted", *(f"p_{n}" for n in label_names)])
        for text, true, probs in zip(texts, y_true, probabilities, strict=True):
            writer.writerow(
                [
                    text,
                    label_names[true],
                    label_names[int(probs.argmax())],
                    *(f"{p:.6f}" for p in probs),
                ]
            )


def describe_truncated(truncated: dict, split: str | None = None) -> str:
    """The report's line on the texts longer than max_length (a report's `truncated`)."""
    texts = f"{split} texts" if split else "texts"
    if truncated["truncation"] == "windows":
        what = (
            f"were split into windows sharing {truncated['stride']} tokens; each text's "
            "probabilities are its windows' mean"
        )
    else:
        what = f"were cut ({truncated['truncation']})"
    return (
        f"{truncated['texts']} of {truncated['of']} {texts} were longer than "
        f"{truncated['max_length']} tokens and {what}."
    )
