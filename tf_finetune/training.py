"""Running Keras `fit` with validation every epoch, speed figures and TensorBoard logs."""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

import tf_keras

from tf_finetune import throughput

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
    """

    history: dict
    stats: dict


def train(model, train_batches, validation_batches, epochs: int, log_dir: Path, verbose: int = 0):
    """Fits a compiled model, evaluating on validation after each epoch.

    Args:
        model: A compiled Keras model, built under the run's strategy scope.
        train_batches: `tf_data.Batches` of shuffled training batches for `epochs`.
        validation_batches: `tf_data.Batches` of validation batches.
        epochs: Passes over the training data.
        log_dir: Where TensorBoard writes `train/` and `validation/` event files.
        verbose: Keras progress output (0 silent, 1 progress bar, 2 a line per epoch).

    Returns:
        A `TrainResult`.
    """
    monitor = throughput.ThroughputMonitor(train_batches)
    callbacks = [
        monitor,  # first, so the callbacks after it see its figures in the logs
        tf_keras.callbacks.TensorBoard(log_dir=str(log_dir), update_freq="epoch"),
        _EpochLogger(),
    ]
    history = model.fit(
        train_batches.dataset,
        validation_data=validation_batches.dataset,
        epochs=epochs,
        steps_per_epoch=train_batches.steps,
        callbacks=callbacks,
        verbose=verbose,
    )
    metrics = {key: [float(v) for v in values] for key, values in history.history.items()}
    return TrainResult(metrics, throughput.summarize(metrics, monitor, train_batches, model))
