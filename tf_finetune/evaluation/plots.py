"""Pictures of evaluation results, written as PNG files.

Figures are drawn on `matplotlib.figure.Figure` objects, never through pyplot, so
drawing leaves no global state behind: a notebook's backend and open figures are
untouched.
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

# Classes drawn in a confusion matrix at most: past this the cells are unreadable and
# drawing costs grow with the square of the classes.
MAX_DRAWN_CLASSES = 25


def most_confused(matrix, count: int = MAX_DRAWN_CLASSES) -> list[int]:
    """Returns the ids of the `count` classes with the most errors, in id order.

    A class's errors are its row's and its column's off-diagonal counts: examples of
    it predicted as others, and examples of others predicted as it.
    """
    import numpy as np

    matrix = np.asarray(matrix)
    if len(matrix) <= count:
        return list(range(len(matrix)))
    diagonal = np.diag(matrix)
    errors = matrix.sum(axis=0) + matrix.sum(axis=1) - 2 * diagonal
    # Most errors first; ties go to the larger class, then the lower id.
    order = np.lexsort((np.arange(len(matrix)), -matrix.sum(axis=1), -errors))
    return sorted(order[:count].tolist())


def confusion_matrix_png(matrix: list[list[int]], labels: list[str], path: Path | BinaryIO) -> None:
    """Draws a labelled confusion matrix (rows: true label, columns: predicted label).

    With more than `MAX_DRAWN_CLASSES` classes it draws the most confused ones and says
    so in the title; `report.json` keeps the whole matrix.
    """
    from matplotlib.figure import Figure

    title = "Confusion matrix"
    if len(labels) > MAX_DRAWN_CLASSES:
        kept = most_confused(matrix)
        title = f"Confusion matrix: the {len(kept)} most confused of {len(labels)} classes"
        matrix = [[matrix[i][j] for j in kept] for i in kept]
        labels = [labels[i] for i in kept]
    size = max(4.0, 0.6 * len(labels) + 2.5)
    figure = Figure(figsize=(size, size), dpi=100)
    axes = figure.subplots()
    image = axes.imshow(matrix, cmap="Blues")
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
    axes.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    axes.set_yticks(range(len(labels)), labels)
    axes.set_xlabel("predicted label")
    axes.set_ylabel("true label")
    axes.set_title(title, fontsize=10)
    peak = max((max(row) for row in matrix), default=0)
    for i, row in enumerate(matrix):
        for j, count in enumerate(row):
            colour = "white" if peak and count > peak / 2 else "black"
            axes.text(j, i, str(count), ha="center", va="center", color=colour)
    figure.tight_layout()
    figure.savefig(path, format="png")


def report_png(report: dict, path: Path | BinaryIO) -> None:
    """Draws a report's picture: its confusion matrix, or per label for multi-label."""
    if "label_confusion" in report:
        label_confusion_png(report["label_confusion"], path)
    else:
        confusion_matrix_png(report["confusion_matrix"], report["labels"], path)


def label_confusion_png(counts: dict[str, dict[str, int]], path: Path | BinaryIO) -> None:
    """Draws each label's true positives, false positives, false negatives and true
    negatives (a multi-label report's `label_confusion`), coloured by share of examples."""
    import numpy as np
    from matplotlib.figure import Figure

    kinds = ("tp", "fp", "fn", "tn")
    names = list(counts)[: 2 * MAX_DRAWN_CLASSES]
    matrix = np.array([[counts[name][k] for k in kinds] for name in names])
    shares = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    figure = Figure(figsize=(6, max(3.0, 0.4 * len(names) + 1.5)), dpi=100)
    axes = figure.subplots()
    axes.imshow(shares, cmap="Blues", aspect="auto", vmin=0, vmax=1)
    axes.set_xticks(range(4), ["true +", "false +", "false -", "true -"])
    axes.set_yticks(range(len(names)), names)
    title = "Per label: predictions against the truth"
    if len(names) < len(counts):
        title += f" (the first {len(names)} of {len(counts)} labels)"
    axes.set_title(title, fontsize=10)
    for i, row in enumerate(matrix):
        for j, count in enumerate(row):
            colour = "white" if shares[i, j] > 0.5 else "black"
            axes.text(j, i, str(count), ha="center", va="center", color=colour)
    figure.tight_layout()
    figure.savefig(path, format="png")


def training_curves_png(history: dict[str, list[float]], path: Path | BinaryIO) -> None:
    """Draws loss and accuracy per epoch, training against validation, side by side."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 4), dpi=100)
    panels = figure.subplots(1, 2)
    for axes, metric in zip(panels, ("loss", "accuracy"), strict=True):
        for key, label in ((metric, "train"), (f"val_{metric}", "validation")):
            values = history.get(key, [])
            axes.plot(range(1, len(values) + 1), values, marker="o", label=label)
        axes.set_xlabel("epoch")
        axes.set_title(metric)
        axes.xaxis.get_major_locator().set_params(integer=True)
        axes.legend()
    figure.tight_layout()
    figure.savefig(path, format="png")


def comparison_png(rows: list[dict], path: Path | BinaryIO) -> None:
    """Draws each run's macro F1, training speed and inference speed as bars."""
    from matplotlib.figure import Figure

    panels = (
        ("macro_f1", "macro F1"),
        ("train_samples_per_second", "train samples/s"),
        ("inference_texts_per_second", "inference texts/s"),
    )
    names = [row["run"] for row in rows]
    height = max(3.0, 0.5 * len(rows) + 1.5)
    figure = Figure(figsize=(12, height), dpi=100)
    axes_row = figure.subplots(1, len(panels), sharey=True)
    for axes, (key, title) in zip(axes_row, panels, strict=True):
        values = [row.get(key) or 0.0 for row in rows]
        bars = axes.barh(range(len(rows)), values, color="tab:blue")
        axes.bar_label(bars, labels=[_bar_label(row.get(key)) for row in rows], padding=3)
        axes.set_title(title)
        axes.set_xlim(0, max([*values, 1e-9]) * 1.3)
    axes_row[0].set_yticks(range(len(rows)), names)
    axes_row[0].invert_yaxis()
    figure.tight_layout()
    figure.savefig(path, format="png")


def _bar_label(value) -> str:
    if value is None or value == "":
        return "n/a"
    return f"{value:.3f}" if value < 1.5 else f"{value:,.0f}"
