"""Keeping the best epoch's weights, and early stopping on a validation metric.

`BestEpoch` watches one metric of the epoch logs (`val_loss`, `val_accuracy`, or
`val_macro_f1` and `val_weighted_f1`, which `summaries.ValidationSummaries` adds) and
writes the model's weights whenever an epoch beats every epoch before it. With a
patience it stops training once that many epochs in a row have not. After training,
`restore` loads the best epoch's weights, so the report and the export are that epoch's.

Everything it knows follows from the run's history, which each checkpoint holds, so a
resumed run picks up the same best epoch and the same count of epochs without
improvement. The weights of the best epoch are written before that epoch's checkpoint,
and the previous best's are deleted only after it.
"""

from __future__ import annotations

import dataclasses
import logging

import tf_keras

from tf_finetune.config import MONITORS
from tf_finetune.training import checkpointing

logger = logging.getLogger(__name__)


def best_index(values: list[float], monitor: str) -> int | None:
    """Returns the index of the best value (the first of equals), or None if empty."""
    if not values:
        return None
    sign = 1 if MONITORS[monitor] else -1
    return min(range(len(values)), key=lambda i: (sign * values[i], i))


def patience_exhausted(values: list[float], monitor: str, patience: int | None) -> bool:
    """Whether the last `patience` epochs all failed to beat the best before them."""
    best = best_index(values, monitor)
    return patience is not None and best is not None and len(values) - 1 - best >= patience


@dataclasses.dataclass
class Selection:
    """Which epoch's weights a run reports and exports.

    Attributes:
        monitor: The metric epochs were judged by; None when the last epoch is kept.
        epoch: The chosen epoch, 1-based.
        value: Its `monitor` value.
        trained: Epochs trained.
        stopped_early: Training stopped before its last epoch for lack of improvement.
    """

    monitor: str | None
    epoch: int
    value: float | None
    trained: int
    stopped_early: bool = False

    def describe(self) -> str:
        """Returns one line for the report."""
        if self.monitor is None:
            return f"Model of epoch {self.epoch}, the last one trained."
        line = (
            f"Model of epoch {self.epoch} of {self.trained} trained: the best "
            f"{self.monitor} ({self.value:.4f})."
        )
        if self.stopped_early:
            line += f" Training stopped early after epoch {self.trained}."
        return line


def selection(history: dict, monitor: str, epochs: int) -> Selection:
    """Returns the best epoch of a run's `history`."""
    values = history[monitor]
    best = best_index(values, monitor)
    return Selection(
        monitor=monitor,
        epoch=best + 1,
        value=values[best],
        trained=len(values),
        stopped_early=len(values) < epochs,
    )


def last_epoch(history: dict) -> Selection:
    """Returns the last epoch of a run's `history`, for a run that keeps it."""
    trained = len(history.get("loss", []))
    return Selection(monitor=None, epoch=trained, value=None, trained=trained)


def weights_name(epoch: int) -> str:
    """The checkpoint name of an epoch's (0-based) weights."""
    return f"weights-epoch-{epoch + 1}"


class BestEpoch(tf_keras.callbacks.Callback):
    """Saves the best epoch's weights and stops after `patience` epochs without progress.

    Args:
        checkpointer: The run's checkpointer, which writes and reads the weights.
        monitor: One of `config.MONITORS`.
        patience: Epochs without improvement before stopping; None never stops.
        history: The history of the epochs already trained (a resumed run's).

    Place it after the callbacks that add `monitor` to the logs and before the
    checkpoint callback; call `flush` after each checkpoint (`Checkpointer.after_save`).
    """

    def __init__(self, checkpointer, monitor: str, patience: int | None, history: dict):
        super().__init__()
        self._checkpointer = checkpointer
        self._monitor = monitor
        self._patience = patience
        self._values = list(history.get(monitor, []))

    def on_epoch_end(self, epoch, logs=None):
        self._values.append(float((logs or {})[self._monitor]))
        index = len(self._values) - 1  # `epoch` too, when the history is the run's
        if best_index(self._values, self._monitor) == index:
            self._checkpointer.save_weights(weights_name(index))
        if patience_exhausted(self._values, self._monitor, self._patience):
            logger.info(
                "No better %s for %d epochs: stopping after epoch %d.",
                self._monitor,
                self._patience,
                index + 1,
            )
            self.model.stop_training = True

    def flush(self) -> None:
        """Deletes the weights of epochs that are no longer the best."""
        best = best_index(self._values, self._monitor)
        if best is not None:
            self._checkpointer.remove_weights(keep=weights_name(best))


def restore(checkpointer: checkpointing.Checkpointer, chosen: Selection) -> None:
    """Loads the chosen epoch's weights into the model."""
    checkpointer.restore_weights(weights_name(chosen.epoch - 1))
    logger.info(
        "Restored the weights of epoch %d of %d, the best %s (%.4f).",
        chosen.epoch,
        chosen.trained,
        chosen.monitor,
        chosen.value,
    )
