"""TensorBoard summaries of a run beyond Keras' own: a full evaluation every epoch.

After each epoch `ValidationSummaries` predicts the validation split, once: it puts
Keras' `val_loss` and `val_accuracy` and its own `val_macro_f1` and `val_weighted_f1`
into the epoch's logs (for early stopping, the history and Keras' TensorBoard
callback; Keras itself does not validate), and logs, under `<run>/logs/validation` at
the epoch's step:
- scikit-learn's accuracy, macro and weighted precision, recall and F1, and each
  class's F1 (the notebook's `compute_metrics`), as scalars named `eval_*`;
- the confusion matrix as an image (`confusion_matrix`);
- the most confident mistakes as a Markdown table (`misclassified`): text, true and
  predicted label, and the predicted label's probability.

`StepSummaries` logs the loss (the epoch's running mean, as Keras reports it), the
learning rate and samples/s every N steps under `<run>/logs/train`. It holds the
points back until the next checkpoint is saved: a crash loses only the points of the
steps a resumed run trains again, so no step is ever logged twice.

`write_hparams` records the run's settings for TensorBoard's HParams dashboard, which
shows them next to each run's final `eval_*` and `epoch_*` scores, so runs of
different models or learning rates compare side by side.
"""

from __future__ import annotations

import contextlib
import io
import time
from pathlib import Path

import numpy as np
import tensorflow as tf
import tf_keras

from tf_finetune.config import HPARAM_KEYS
from tf_finetune.errors import ExportError, short_reason
from tf_finetune.evaluation import multi_label, plots, scoring

# Mistakes shown per epoch: enough to see a pattern, few enough to read.
MISCLASSIFIED_SHOWN = 10
_AVERAGES = {
    "macro avg": "macro",
    "weighted avg": "weighted",
    "micro avg": "micro",  # multi-label reports only
    "samples avg": "samples",
}
_METRICS = {"precision": "precision", "recall": "recall", "f1-score": "f1"}


def report_scalars(report: dict, label_names: list[str]) -> dict[str, float]:
    """Returns the scalars logged for a scikit-learn report dict, by tag."""
    scalars = {"eval_accuracy": report["accuracy"]}
    for average, short in _AVERAGES.items():
        if average not in report:
            continue
        for metric, name in _METRICS.items():
            scalars[f"eval_{short}_{name}"] = report[average][metric]
    for label in label_names:
        scalars[f"eval_f1/{label}"] = report[label]["f1-score"]
    return {tag: float(value) for tag, value in scalars.items()}


def misclassified_table(texts, y_true, probabilities, label_names, shown=MISCLASSIFIED_SHOWN):
    """Returns a Markdown table of the `shown` most confident mistakes."""
    if np.ndim(y_true) == 2:
        return _mislabelled_table(texts, y_true, probabilities, label_names, shown)
    predicted = probabilities.argmax(axis=-1)
    wrong = np.flatnonzero(predicted != np.asarray(y_true))
    if not len(wrong):
        return "No misclassified examples."
    confidence = probabilities[wrong, predicted[wrong]]
    rows = ["| text | true | predicted | probability |", "|---|---|---|---|"]
    for index in wrong[np.argsort(-confidence, kind="stable")][:shown]:
        text = str(texts[index]).replace("|", "\\|").replace("\n", " ")
        rows.append(
            f"| {text} | {label_names[y_true[index]]} | {label_names[predicted[index]]} "
            f"| {probabilities[index, predicted[index]]:.3f} |"
        )
    return f"{len(wrong)} of {len(predicted)} misclassified; the most confident:\n\n" + "\n".join(
        rows
    )


def _mislabelled_table(texts, y_true, probabilities, label_names, shown):
    """Multi-label: the `shown` examples with the most wrong labels (at 0.5)."""
    y_true = np.asarray(y_true)
    chosen = multi_label.predicted(probabilities)
    wrong = (chosen != y_true).sum(axis=1)
    rows = np.flatnonzero(wrong)
    if not len(rows):
        return "No example has a wrong label."
    table = ["| text | labels | predicted |", "|---|---|---|"]
    for index in rows[np.argsort(-wrong[rows], kind="stable")][:shown]:
        text = str(texts[index]).replace("|", "\\|").replace("\n", " ")
        true = multi_label.label_set(y_true[index], label_names) or "(none)"
        predicted = multi_label.label_set(chosen[index], label_names) or "(none)"
        table.append(f"| {text} | {true} | {predicted} |")
    return f"{len(rows)} of {len(y_true)} examples have a wrong label; the most wrong:\n\n" + (
        "\n".join(table)
    )


class StepSummaries(tf_keras.callbacks.Callback):
    """Logs `step_loss`, `step_learning_rate` and `step_samples_per_second` every N steps.

    Args:
        log_dir: The run's TensorBoard folder; points go to its `train/`.
        every_steps: Optimizer steps between points.
        steps_per_epoch: Batches per epoch.
        batch_size: The global batch size.

    Call `flush` once the training state is saved (`Checkpointer.after_save`).
    """

    def __init__(self, log_dir: Path, every_steps: int, steps_per_epoch: int, batch_size: int):
        super().__init__()
        self._writer = file_writer(Path(log_dir) / "train")
        self._every = every_steps
        self._steps = steps_per_epoch
        self._batch_size = batch_size
        self._epoch = 0
        self._pending: list[tuple[int, dict[str, float]]] = []
        self._since: tuple[float, int] | None = None

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._since = None  # validation ran in between

    def on_train_batch_end(self, batch, logs=None):
        step = self._epoch * self._steps + batch + 1
        now = time.perf_counter()
        if self._since is None:
            self._since = (now, step)
        if step % self._every:
            return
        started, first = self._since
        values = {"step_loss": float((logs or {}).get("loss", float("nan")))}
        values["step_learning_rate"] = _learning_rate(self.model.optimizer)
        if step > first:
            values["step_samples_per_second"] = (step - first) * self._batch_size / (now - started)
        self._pending.append((step, values))
        self._since = (now, step)

    def flush(self) -> None:
        """Writes the points held back; call it when a checkpoint is complete."""
        with self._writer.as_default():
            for step, values in self._pending:
                for tag, value in values.items():
                    tf.summary.scalar(tag, value, step=step)
        self._writer.flush()
        self._pending = []

    def on_train_end(self, logs=None):
        self._writer.close()


def _learning_rate(optimizer) -> float:
    rate = optimizer.learning_rate
    if callable(rate):  # a schedule of the step
        rate = rate(optimizer.iterations)
    return float(tf.convert_to_tensor(rate))


def write_hparams(log_dir: Path, config, global_batch: int) -> None:
    """Writes the run's settings as an HParams session at the root of `log_dir`."""
    from tensorboard.plugins.hparams import api as hp

    values = {name: getattr(config, name) for name in HPARAM_KEYS}
    values["global_batch"] = global_batch
    with _writing(log_dir):
        writer = tf.summary.create_file_writer(str(log_dir))
        with writer.as_default():
            hp.hparams(
                {k: v if isinstance(v, bool | int | float) else str(v) for k, v in values.items()},
                trial_id=config.run_name,
            )
        writer.close()


def file_writer(log_dir: Path) -> tf.summary.SummaryWriter:
    """Creates a summary writer; a folder that cannot be written is an `ExportError`."""
    with _writing(log_dir):
        return tf.summary.create_file_writer(str(log_dir))


@contextlib.contextmanager
def _writing(log_dir: Path):
    try:
        yield
    except (OSError, tf.errors.OpError) as error:
        raise ExportError(
            f"Cannot write TensorBoard logs to {log_dir}: {short_reason(error)}. "
            "Fix the cause (disk space?)."
        ) from None


def validation_logs(loss, y_true, logits: np.ndarray, report: dict) -> dict[str, float]:
    """Returns Keras' `val_loss` and `val_accuracy`, and the F1 scores, from one prediction.

    Keras averages each batch's loss weighted by its size: the mean over examples of
    the loss's per-example values, which is what this computes.
    """
    per_example = loss.call(tf.constant(y_true), tf.constant(logits))
    # Single-label: micro F1 and the mean of each example's F1 are the accuracy.
    accuracy = {"f1-score": report["accuracy"]}
    return {
        "val_loss": float(tf.reduce_mean(per_example)),
        "val_accuracy": float(report["accuracy"]),
        "val_macro_f1": float(report["macro avg"]["f1-score"]),
        "val_weighted_f1": float(report["weighted avg"]["f1-score"]),
        "val_micro_f1": float(report.get("micro avg", accuracy)["f1-score"]),
        "val_samples_f1": float(report.get("samples avg", accuracy)["f1-score"]),
    }


class ValidationSummaries(tf_keras.callbacks.Callback):
    """Scores the validation split after each epoch and logs the scores to TensorBoard.

    Args:
        validation: The split (`loop.ValidationSplit`): its batches, and its texts'
            label ids, texts and, with windows, each window's text.
        log_dir: The run's TensorBoard folder; summaries go to its `validation/`.

    Like `StepSummaries`, it writes an epoch's summaries in `flush`, once the epoch's
    checkpoint is saved, so a resumed run never logs an epoch twice.

    `forward`, when given, is the `forward.Forward` that scores, traced once for
    validation, the report and the export. It runs the model itself or a float32 copy
    of it (`models.float32_copy`), whose weights are brought level with the model's
    first: a model training in reduced precision is then scored as its report and
    export score it. Without it, Keras' `predict` scores the model. Each epoch scored
    in float32 keeps its probabilities in `float32_scores` (epoch -> per-text
    probabilities), for the report to reuse.
    """

    def __init__(self, validation, log_dir: Path, forward=None):
        super().__init__()
        self._forward = forward
        self.float32_scores: dict[int, np.ndarray] = {}
        self._batches = validation.batches
        self._documents = validation.documents
        self._y_true = np.asarray(validation.labels)
        self._texts = validation.texts
        self._labels = list(validation.label_names)
        self._writer = file_writer(Path(log_dir) / "validation")
        self._pending = None

    def on_epoch_end(self, epoch, logs=None):
        multi_label = self._y_true.ndim == 2
        scorer = self._forward or self.model
        if self._forward is not None and self._forward.model is not self.model:
            self._forward.model.set_weights(self.model.get_weights())
        logits = scoring.predict_logits(scorer, self._batches)
        probabilities = scoring.probabilities_of(logits, multi_label)
        if self._documents is not None:  # each text's from its windows', and its loss
            probabilities = scoring.per_text(probabilities, self._documents, multi_label)
            logits = scoring.logits_of(probabilities, multi_label)
        if scorer.compute_dtype == "float32":
            self.float32_scores[epoch] = probabilities
        report = scoring.build_report(self._y_true, probabilities, self._labels)
        self._pending = (epoch, report, probabilities)
        if logs is not None:  # for the callbacks after this one: early stopping, history
            logs.update(validation_logs(self.model.loss, self._y_true, logits, report))

    def flush(self) -> None:
        """Writes the last epoch's summaries; call it when its checkpoint is complete."""
        if self._pending is None:
            return
        epoch, report, probabilities = self._pending
        picture = io.BytesIO()
        plots.report_png(report, picture)
        with self._writer.as_default(step=epoch):
            for tag, value in report_scalars(report, self._labels).items():
                tf.summary.scalar(tag, value)
            image = tf.io.decode_png(picture.getvalue(), channels=3)
            tf.summary.image("confusion_matrix", image[tf.newaxis])
            table = misclassified_table(self._texts, self._y_true, probabilities, self._labels)
            tf.summary.text("misclassified", table)
        self._writer.flush()
        self._pending = None

    def on_train_end(self, logs=None):
        self._writer.close()
