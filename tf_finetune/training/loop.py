"""Running Keras `fit` with validation every epoch, checkpoints, speed figures and TensorBoard."""

from __future__ import annotations

import dataclasses
import logging
import re
import time
from pathlib import Path

import tensorflow as tf
import tf_keras

from tf_finetune.errors import TrainingInterrupted, WorkerLost, first_line
from tf_finetune.training import checkpointing, interruption, summaries, throughput

logger = logging.getLogger(__name__)


class _EpochLogger(tf_keras.callbacks.Callback):
    """Logs each epoch's metrics, speed and duration through `logging`."""

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        metrics = ", ".join(
            f"{k} {v:.4f}" for k, v in logs.items() if k not in throughput.EPOCH_KEYS
        )
        logger.info(
            "Epoch %d: %s; %.1f samples/s, %.1f%% padding, %.0f MiB (%.1f s).",
            epoch + 1,
            metrics,
            logs.get("samples_per_second", 0.0),
            100 * logs.get("padding_share", 0.0),
            logs.get("rss_mib", 0.0),
            time.perf_counter() - self._start,
        )


@dataclasses.dataclass
class TrainResult:
    """What `train` measured.

    Attributes:
        history: Keras metrics per epoch, with the speed figures of `throughput`.
        stats: The run's speed figures (`throughput.summarize`).
        float32_scores: The validation probabilities of each epoch this call scored in
            float32 (epoch index -> per-text probabilities, split order).
    """

    history: dict
    stats: dict
    float32_scores: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class ValidationSplit:
    """The validation split as the per-epoch evaluation needs it.

    Attributes:
        batches: Its `tf_data.Batches`, in evaluation order.
        labels: Its label ids, in split order.
        texts: Its texts, in split order.
        label_names: Label names by id.
        documents: With windows, each window's text (its index in the split): a
            text's probabilities are the mean of its windows'. None without.
    """

    batches: object
    labels: list[int]
    texts: list[str]
    label_names: list[str]
    documents: object = None


def train(
    model,
    train_batches,
    validation: ValidationSplit,
    epochs: int,
    log_dir: Path,
    checkpointer: checkpointing.Checkpointer,
    checkpoint_steps: int,
    start: checkpointing.ResumePoint,
    verbose: int = 0,
    extra_callbacks=(),
    compiles_per_shape: bool = False,
    forward=None,
):
    """Fits a compiled model, evaluating on validation after each epoch.

    Args:
        model: A compiled Keras model, built under the run's strategy scope.
        train_batches: `tf_data.Batches` of shuffled training batches for `epochs`,
            starting at `start.global_step`.
        validation: The validation split, predicted once after each epoch by
            `summaries.ValidationSummaries` for the `val_*` metrics and its summaries.
        epochs: Passes over the training data.
        log_dir: Where TensorBoard writes `train/` and `validation/` event files.
        checkpointer: Saves the training state every `checkpoint_steps` steps and at
            each epoch end.
        checkpoint_steps: Optimizer steps between checkpoints.
        start: Where training starts: `ResumePoint.start()`, or a restored checkpoint's.
        verbose: Keras progress output (0 silent, 1 progress bar, 2 a line per epoch).
        extra_callbacks: More Keras callbacks (`run_callbacks`), run after validation
            and before the checkpoint callback, so a point recorded at a step is flushed
            with that step's checkpoint.
        compiles_per_shape: The steps are XLA-compiled, once per batch shape.
        forward: The `forward.Forward` that scores validation, of the model or of a
            float32 copy of it (`summaries.ValidationSummaries`); None scores with
            Keras' `predict`.

    Returns:
        A `TrainResult`; its history holds every epoch, those before `start` included.

    Raises:
        TrainingInterrupted: SIGTERM or Ctrl-C arrived; a checkpoint was saved first.
        TrainingDiverged: The loss became NaN or infinite.
    """
    meter = throughput.SpeedMeter(train_batches, compiles_per_shape)
    scorer = summaries.ValidationSummaries(validation, log_dir, forward)
    checkpointer.after_save.append(scorer.flush)
    with interruption.StopSignals() as signals:
        saver = checkpointing.TrainingCheckpoint(
            checkpointer, train_batches.steps, checkpoint_steps, start, signals, meter
        )
        callbacks = [
            meter,  # first, so the callbacks after it see its figures in the logs
            scorer,  # puts the val_* metrics into the logs of the callbacks after it
            *extra_callbacks,  # before the saver: what they hold by a step is saved with it
            saver,  # before TensorBoard: an epoch is logged only once it is saved
            tf_keras.callbacks.TensorBoard(log_dir=str(log_dir), update_freq="epoch"),
            _EpochLogger(),
        ]
        try:
            model.fit(
                train_batches.dataset,
                initial_epoch=start.epoch,
                epochs=epochs,
                steps_per_epoch=train_batches.steps,
                callbacks=callbacks,
                verbose=verbose,
            )
        except tf.errors.UnavailableError as error:
            if not isinstance(model.distribute_strategy, tf.distribute.MultiWorkerMirroredStrategy):
                raise
            raise _worker_lost(error) from None
    if signals.received:  # at an epoch's end or in validation: that epoch is saved
        raise _stopped_after_epoch(signals, checkpointer)
    stats = throughput.summarize(saver.history, meter, train_batches, model)
    return TrainResult(history=saver.history, stats=stats, float32_scores=scorer.float32_scores)


def _stopped_after_epoch(signals, checkpointer) -> TrainingInterrupted:
    return TrainingInterrupted(
        f"Stopped by {signals.received} at the end of an epoch; its checkpoint is "
        f"saved in {checkpointer.directory}. Run the same command with --resume to "
        "continue.",
        signals.exit_code,
    )


def _worker_lost(error: Exception) -> WorkerLost:
    return WorkerLost(
        f"Lost contact with another worker ({_unhealthy_tasks(error)}). Start every "
        "worker again with the same command and --resume: they continue from the "
        "chief's last checkpoint."
    )


def _unhealthy_tasks(error: Exception) -> str:
    """Names the tasks TensorFlow's health check found dead, from its error message."""
    message = str(error)
    _, found, rest = message.partition("unhealthy")
    tasks = re.findall(r"/job:(\w+)/replica:\d+/task:(\d+)", rest) if found else []
    if not tasks:
        return first_line(error)
    return ", ".join(f"{kind} {index}" for kind, index in tasks) + " stopped answering"


def run_callbacks(config, train_batches, global_batch: int, checkpointer, log_dir, start):
    """Returns the callbacks a run adds to `train`'s, in the order they must run.

    `train` validates before these run, so `BestEpoch` finds the metric it monitors.
    What each callback holds back for an epoch or a step is written by a hook of the
    checkpointer, so it is saved together with that step's checkpoint.

    Args:
        config: The run's resolved `FitConfig`.
        train_batches: The training `tf_data.Batches`.
        global_batch: Examples per step, over every replica.
        checkpointer: The run's `checkpointing.Checkpointer`; hooks are added to it.
        log_dir: The run's TensorBoard folder.
        start: Where training starts (a resumed run's history counts for best epochs).
    """
    from tf_finetune.modeling import freezing, models, optimization
    from tf_finetune.training import best_epoch

    step_summaries = summaries.StepSummaries(
        log_dir, config.log_steps, train_batches.steps, global_batch
    )
    callbacks = [step_summaries]
    checkpointer.after_save.append(step_summaries.flush)
    if config.restore_best:
        # `train` validates before these callbacks run: the monitored metric is there.
        keeper = best_epoch.BestEpoch(
            checkpointer, config.monitor, config.early_stopping_patience, start.history
        )
        callbacks.append(keeper)
        checkpointer.after_save.append(keeper.flush)
    if config.gradient_accumulation_steps > 1:
        callbacks.append(optimization.AccumulationGroups(train_batches.steps))
    if config.unfreeze_after is not None:
        retrace = models.use_xla_train_step if config.jit_compile else None
        callbacks.append(freezing.UnfreezeBase(config.unfreeze_after, retrace))
    return callbacks
