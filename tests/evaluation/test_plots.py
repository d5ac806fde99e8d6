"""Tests of the report's pictures, and of keeping them readable for many classes."""

import io

import numpy as np
from PIL import Image

from tf_finetune.evaluation import plots
from tf_finetune.evaluation.scoring import build_report, format_report


def _png_size(matrix, labels):
    picture = io.BytesIO()
    plots.confusion_matrix_png(matrix, labels, picture)
    return Image.open(io.BytesIO(picture.getvalue())).size


def test_most_confused_ranks_classes_by_their_errors():
    matrix = np.diag([50, 40, 30, 20, 10])
    matrix[3, 1] = 9  # class 3 mistaken for 1: both take 9 errors
    matrix[4, 0] = 2
    assert plots.most_confused(matrix, count=2) == [1, 3]
    assert plots.most_confused(matrix, count=3) == [0, 1, 3]  # 0 and 4 tie; 0 is larger
    assert plots.most_confused(matrix, count=9) == [0, 1, 2, 3, 4]


def test_300_classes_draw_only_the_most_confused_and_say_so():
    rng = np.random.default_rng(0)
    classes = 300
    y_true = np.repeat(np.arange(classes), 4)
    y_pred = y_true.copy()
    confused = [7, 42, 199]
    for c in confused:  # every example of these three is predicted as the next class
        y_pred[y_true == c] = c + 1
    labels = [f"topic-{i}" for i in range(classes)]
    probabilities = np.eye(classes)[y_pred] + rng.uniform(0, 1e-3, (len(y_pred), classes))
    report = build_report(y_true, probabilities, labels)
    assert np.asarray(report["confusion_matrix"]).shape == (300, 300)  # report.json keeps all

    kept = plots.most_confused(report["confusion_matrix"])
    assert len(kept) == plots.MAX_DRAWN_CLASSES
    assert {7, 8, 42, 43, 199, 200} <= set(kept)
    # The picture is the size of a 25-class one, not 300 classes wide.
    small = np.diag(np.full(plots.MAX_DRAWN_CLASSES, 4)).tolist()
    assert _png_size(report["confusion_matrix"], labels) == _png_size(small, labels[:25])

    text = format_report(y_true, probabilities, labels)
    heading = text.split("Confusion matrix (rows: true label, columns: predicted)")[1]
    assert heading.startswith(", the 25 most confused of 300 classes; report.json has them all")
    matrix_rows = heading.strip().splitlines()[1:]
    assert len(matrix_rows) == 1 + 25
    assert matrix_rows[0].split() == [labels[i] for i in kept]


def test_drawing_leaves_no_global_matplotlib_state(tmp_path):
    import matplotlib
    import matplotlib.pyplot as plt

    backend, figures = matplotlib.get_backend(), plt.get_fignums()
    plots.confusion_matrix_png([[3, 1], [0, 4]], ["neg", "pos"], tmp_path / "c.png")
    plots.training_curves_png({"loss": [0.7, 0.5], "val_loss": [0.6, 0.55]}, tmp_path / "t.png")
    rows = [{"run": "a", "macro_f1": 0.8, "train_samples_per_second": 50.0}]
    plots.comparison_png(rows, tmp_path / "p.png")
    assert (matplotlib.get_backend(), plt.get_fignums()) == (backend, figures)
    assert all(Image.open(tmp_path / name).size[0] >= 400 for name in ("c.png", "t.png", "p.png"))
