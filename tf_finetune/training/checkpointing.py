"""Saving training state during `fit` and continuing an interrupted run from it.

`Checkpointer` writes the model's weights, the optimizer's state (its step counter
and Adam's moments) and the run's progress (epoch, step, finished epochs' metrics,
the partial epoch's metric sums and seconds) as one TensorFlow checkpoint. It keeps
the last `KEEP` checkpoints, listed in `checkpoints.json`, which is replaced
atomically only after a checkpoint is completely written: a crash while writing leaves
the previous list, and the checkpoints on it, as they were. `restore` reads the newest
checkpoint and, when it is corrupt or unreadable, warns and falls back to the one
before it.

`TrainingCheckpoint` is the Keras callback that saves every `every_steps` steps and at
each epoch end, and stops the run cleanly on SIGTERM or Ctrl-C and on a non-finite
loss. tf_keras' `BackupAndRestore` is the model for it; it differs in keeping two
checkpoints instead of one, and in resuming mid-epoch with the batches the run had not
yet trained on (Keras restarts the epoch's data and feeds its first batches again).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from pathlib import Path

import tensorflow as tf
import tf_keras

from tf_finetune.errors import CheckpointError, TrainingDiverged, TrainingInterrupted, first_line
from tf_finetune.runtime import atomic
from tf_finetune.runtime.run_dir import CHECKPOINT_INDEX

logger = logging.getLogger(__name__)

KEEP = 2
INDEX_NAME = CHECKPOINT_INDEX


@dataclasses.dataclass
class ResumePoint:
    """Where a restored run continues.

    Attributes:
        global_step: Optimizer steps already taken.
        epoch: The epoch to continue (0-based); equal to the run's epochs when training
            had finished.
        step_in_epoch: Batches of `epoch` already trained.
        history: Each finished epoch's Keras logs.
        metric_sums: The partial epoch's metric variables (sums and counts).
        epoch_seconds: The partial epoch's training seconds so far.
        checkpoint: The checkpoint it came from.
    """

    global_step: int
    epoch: int
    step_in_epoch: int
    history: dict[str, list[float]]
    metric_sums: list[list]
    epoch_seconds: float
    checkpoint: str

    @classmethod
    def start(cls) -> ResumePoint:
        """The point of a run that has not trained yet."""
        return cls(
            global_step=0,
            epoch=0,
            step_in_epoch=0,
            history={},
            metric_sums=[],
            epoch_seconds=0.0,
            checkpoint="",
        )


class _Progress(tf.train.experimental.PythonState):
    """The run's progress as JSON inside the checkpoint, so it is saved with the weights."""

    def __init__(self):
        self.value: dict = {}

    def serialize(self):
        return json.dumps(self.value)

    def deserialize(self, string_value):
        self.value = json.loads(string_value)


class Checkpointer:
    """Writes and reads the training checkpoints of one run.

    Args:
        directory: The run's `checkpoints/` folder.
        model: The compiled model; its optimizer's slots must exist (see
            `optimization.create_slots`) so a restore assigns them at once.
        restore_from: The folder `restore` reads, when not `directory`: a non-chief
            worker writes into its scratch directory and resumes from the chief's.
    """

    def __init__(self, directory: Path, model, restore_from: Path | None = None):
        self.directory = Path(directory)
        self.restore_from = Path(restore_from or directory)
        # Called after each checkpoint is complete (e.g. to write buffered summaries).
        self.after_save: list = []
        self._progress = _Progress()
        self._checkpoint = tf.train.Checkpoint(
            model=model, optimizer=model.optimizer, progress=self._progress
        )
        self._weights = tf.train.Checkpoint(model=model)

    def listed(self, directory: Path | None = None) -> list[str]:
        """Returns the names of the checkpoints kept in `directory`, oldest first."""
        index = (directory or self.directory) / INDEX_NAME
        if not index.is_file():
            return []
        try:
            return list(json.loads(index.read_text(encoding="utf-8"))["checkpoints"])
        except (ValueError, KeyError, TypeError):
            raise CheckpointError(
                f"Checkpoint list {index} is corrupt. Delete it to restart the run from "
                "scratch, or restore it from a backup."
            ) from None

    def save(self, point: ResumePoint) -> str:
        """Writes a checkpoint of the current weights and `point`; returns its name."""
        self.directory.mkdir(parents=True, exist_ok=True)
        name = f"ckpt-{point.global_step}"
        self._progress.value = dataclasses.asdict(point) | {"checkpoint": name}
        kept = [n for n in self.listed() if n != name] + [name]
        try:
            self._checkpoint.write(str(self.directory / name))
            atomic.fault_point(f"checkpoint:{point.global_step}")
            atomic.write_text(
                self.directory / INDEX_NAME, json.dumps({"checkpoints": kept[-KEEP:]}) + "\n"
            )
        except (OSError, tf.errors.OpError) as error:
            raise CheckpointError(
                f"Cannot write checkpoint {self.directory / name}: {first_line(error)}. "
                "Fix the cause (disk space?)."
            ) from None
        for old in kept[:-KEEP]:
            for path in self.directory.glob(f"{old}.*"):
                path.unlink(missing_ok=True)
        for hook in self.after_save:
            hook()
        return name

    def save_weights(self, name: str) -> None:
        """Writes the model's weights alone as checkpoint `name` (e.g. the best epoch's)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        try:
            self._weights.write(str(self.directory / name))
        except (OSError, tf.errors.OpError) as error:
            raise CheckpointError(
                f"Cannot write {self.directory / name}: {first_line(error)}. Fix the cause "
                "(disk space?) and run the same command with --resume."
            ) from None

    def restore_weights(self, name: str) -> None:
        """Reads weights saved by `save_weights` into the model.

        Raises:
            CheckpointError: No readable checkpoint `name` in this run's folders.
        """
        for directory in dict.fromkeys([self.directory, self.restore_from]):
            path = directory / name
            if not path.with_name(name + ".index").is_file():
                continue
            try:
                self._weights.read(str(path)).assert_existing_objects_matched()
            except (tf.errors.OpError, ValueError, AssertionError) as error:
                raise CheckpointError(
                    f"Cannot read {path}: {first_line(error)}. Start the run again with "
                    "--overwrite."
                ) from None
            return
        raise CheckpointError(
            f"No checkpoint {name} in {self.directory}. Start the run again with --overwrite."
        )

    def remove_weights(self, keep: str) -> None:
        """Deletes the weights-only checkpoints other than `keep`."""
        for path in self.directory.glob("weights-*"):
            if path.name.split(".")[0] != keep:
                path.unlink(missing_ok=True)

    def restore(self) -> ResumePoint:
        """Restores the newest readable checkpoint into the model and optimizer.

        Raises:
            CheckpointError: There is no checkpoint, or none can be read.
        """
        names = self.listed(self.restore_from)
        if not names:
            raise CheckpointError(
                f"No checkpoint in {self.restore_from}. The run stopped before its first "
                "checkpoint: start it again with --overwrite."
            )
        for name in reversed(names):
            path = self.restore_from / name
            try:
                self._checkpoint.read(str(path)).assert_existing_objects_matched()
            except (tf.errors.OpError, ValueError, AssertionError) as error:
                logger.warning(
                    "Checkpoint %s cannot be read (%s); trying the one before it.",
                    path,
                    first_line(error),
                )
                continue
            point = ResumePoint(**self._progress.value)
            logger.info(
                "Resuming from %s: epoch %d, step %d of it (%d steps done).",
                path,
                point.epoch + 1,
                point.step_in_epoch,
                point.global_step,
            )
            return point
        raise CheckpointError(
            f"No checkpoint in {self.restore_from} can be read (newest: {names[-1]}). "
            "Start the run again with --overwrite."
        )


class TrainingCheckpoint(tf_keras.callbacks.Callback):
    """Checkpoints during `fit`, continues from a `ResumePoint`, stops cleanly.

    Args:
        checkpointer: Where checkpoints go.
        steps_per_epoch: Batches per epoch.
        every_steps: Save after every this many optimizer steps (and at epoch ends).
        start: Where this `fit` starts (`ResumePoint.start()` for a new run).
        stop_signals: An `interruption.StopSignals`; when it has received a signal,
            the callback saves after the current step and raises `TrainingInterrupted`.
        meter: The run's `throughput.SpeedMeter`, whose partial-epoch seconds
            are saved and restored.
    """

    def __init__(self, checkpointer, steps_per_epoch, every_steps, start, stop_signals, meter):
        super().__init__()
        self._checkpointer = checkpointer
        self._steps = steps_per_epoch
        self._every = every_steps
        self._start = start
        self._signals = stop_signals
        self._meter = meter
        self.history: dict[str, list[float]] = {k: list(v) for k, v in start.history.items()}
        self._epoch = start.epoch
        self._pending_sums = start.metric_sums if start.step_in_epoch else []

    def on_train_begin(self, logs=None):
        if self._start.step_in_epoch:
            # Keras' own mid-epoch resume hook: the first epoch starts at this step.
            counters = _StartCounters(self._start.epoch, self._start.step_in_epoch)
            self.model._training_state = counters
            self._meter.carry_seconds(self._start.epoch_seconds)

    def on_train_end(self, logs=None):
        if isinstance(getattr(self.model, "_training_state", None), _StartCounters):
            self.model._training_state = None

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        step_in_epoch = batch + 1
        global_step = self._epoch * self._steps + step_in_epoch
        if self._pending_sums:
            self._add_metric_sums(self._pending_sums)
            self._pending_sums = []
        loss = float((logs or {}).get("loss", 0.0))
        if not math.isfinite(loss):
            raise TrainingDiverged(
                f"The training loss became {loss} at step {global_step} (epoch "
                f"{self._epoch + 1}, batch {step_in_epoch}); nothing was saved after it. "
                "Lower --learning-rate, or check the data for broken rows."
            )
        atomic.fault_point(f"step:{global_step}")
        if self._signals is not None and self._signals.received:
            if step_in_epoch == self._steps:
                # The epoch's last step: let validation run and stop at the epoch end,
                # whose checkpoint a resume can start the next epoch from.
                self.model.stop_training = True
                return
            name = self._save(global_step, step_in_epoch)
            raise TrainingInterrupted(
                f"Stopped by {self._signals.received} after step {global_step}; saved "
                f"{self._checkpointer.directory / name}. Run the same command with --resume "
                "to continue.",
                self._signals.exit_code,
            )
        if global_step % self._every == 0 and step_in_epoch < self._steps:
            self._save(global_step, step_in_epoch)

    def on_epoch_end(self, epoch, logs=None):
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(float(value))
        point = ResumePoint(
            global_step=(epoch + 1) * self._steps,
            epoch=epoch + 1,
            step_in_epoch=0,
            history=self.history,
            metric_sums=[],
            epoch_seconds=0.0,
            checkpoint="",
        )
        self._checkpointer.save(point)

    def _save(self, global_step: int, step_in_epoch: int) -> str:
        sums = [[v.numpy().tolist() for v in m.variables] for m in self.model.metrics]
        point = ResumePoint(
            global_step=global_step,
            epoch=self._epoch,
            step_in_epoch=step_in_epoch,
            history=self.history,
            metric_sums=sums,
            epoch_seconds=self._meter.epoch_seconds,
            checkpoint="",
        )
        return self._checkpointer.save(point)

    def _add_metric_sums(self, sums: list[list]) -> None:
        """Adds the partial epoch's saved sums and counts to the metrics' state.

        Keras resets the metrics when an epoch begins and builds them in the first
        step, so the saved sums are added after that step. Every metric here (the loss
        mean, accuracy) is a sum and a count, so adding them gives the whole epoch's.
        """
        strategy = self.model.distribute_strategy
        replicas = strategy.num_replicas_in_sync
        for metric, saved in zip(self.model.metrics, sums, strict=False):
            for variable, value in zip(metric.variables, saved, strict=False):
                # Under a strategy a metric variable has one part per replica and reads
                # as their sum; each replica's part takes an equal share.
                share = tf.cast(tf.constant(value, tf.float64) / replicas, variable.dtype)
                for part in strategy.experimental_local_results(variable):
                    part.assign_add(share)


class _StartCounters:
    """What Keras' `fit` asks a training state for: the epoch and step to start at."""

    def __init__(self, epoch: int, step: int):
        self._counters = (epoch, step)

    def maybe_load_initial_counters_from_ckpt(self, steps_per_epoch, initial_epoch, mode):
        return self._counters
