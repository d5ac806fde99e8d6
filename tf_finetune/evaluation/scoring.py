"""Predicting on an evaluation split and writing the scikit-learn classification report.

Multi-label labels (`y_true` a 0/1 matrix) are scored by `multi_label`; the functions
here hand them on, so a caller needs to know the problem only to turn logits into
probabilities.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import tensorflow as tf
from sklearn.metrics import classification_report, confusion_matrix

from tf_finetune.evaluation import multi_label as multi
from tf_finetune.evaluation import plots
from tf_finetune.modeling.forward import Forward


def predict_logits(model, batches) -> np.ndarray:
    """Returns float32 logits `[N, C]` in split order.

    Args:
        model: A Keras classifier returning `logits`, predicted with Keras' `predict`
            (which shares batches out to a strategy's replicas), or its
            `forward.Forward`, called batch by batch.
        batches: `tf_data.Batches` of an evaluation split (unshuffled).
    """
    if isinstance(model, Forward):
        return batches.restore_order(model.logits(batches.dataset))
    features = batches.dataset.map(lambda x, y: x)
    logits = model.predict(features, verbose=0)["logits"]
    return batches.restore_order(np.asarray(logits, np.float32))


def probabilities_of(logits: np.ndarray, multi_label: bool = False) -> np.ndarray:
    """Softmax of float32 logits; each label's sigmoid for multi-label models."""
    if multi_label:
        return tf.sigmoid(logits).numpy()
    return tf.nn.softmax(logits, axis=-1).numpy()


def predict_probabilities(model, batches, multi_label: bool = False) -> np.ndarray:
    """Returns class probabilities `[N, C]` in split order (see `predict_logits`)."""
    return probabilities_of(predict_logits(model, batches), multi_label)


def logits_of(probabilities: np.ndarray, multi_label: bool = False) -> np.ndarray:
    """Logits that give `probabilities` back (for the loss of averaged windows)."""
    tiny = np.finfo(np.float32).tiny
    if multi_label:
        p = np.clip(probabilities, tiny, 1 - np.finfo(np.float32).epsneg)
        return np.log(p) - np.log1p(-p)
    return np.log(np.maximum(probabilities, tiny))


def per_text(probabilities, documents: np.ndarray | None, multi_label: bool = False):
    """Each text's probabilities from its windows' (`documents`, ascending, names each
    window's text): their mean, or for multi-label their maximum (a label any part of
    the text shows); `probabilities` as they are without windows."""
    if documents is None:
        return probabilities
    starts = np.flatnonzero(np.r_[True, np.diff(documents) != 0])
    if multi_label:
        return np.maximum.reduceat(probabilities, starts, axis=0)
    counts = np.diff(np.r_[starts, len(documents)])
    return np.add.reduceat(probabilities, starts, axis=0) / counts[:, None]


def build_report(y_true, probabilities: np.ndarray, label_names: list[str], thresholds=None):
    """Returns scikit-learn's report dict plus `confusion_matrix` and `labels`.

    Every class appears, including classes absent from `y_true` (their support is 0).
    Multi-label labels get `multi_label.build_report` (with `thresholds`).
    """
    if np.ndim(y_true) == 2:
        return multi.build_report(y_true, probabilities, label_names, thresholds)
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


def format_report(y_true, probabilities: np.ndarray, label_names: list[str], thresholds=None):
    """Returns scikit-learn's text report followed by the labelled confusion matrix."""
    if np.ndim(y_true) == 2:
        return multi.format_report(y_true, probabilities, label_names, thresholds)
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


def write_predictions(path: Path, texts, y_true, probabilities, label_names, thresholds=None):
    """Writes one CSV row per example: text, true and predicted label, each probability."""
    if np.ndim(y_true) == 2:
        multi.write_predictions(path, texts, y_true, probabilities, label_names, thresholds)
        return
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
