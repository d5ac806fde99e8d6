"""Running Keras `fit` with validation every epoch and TensorBoard logs."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import tf_keras

logger = logging.getLogger(__name__)


class _EpochLogger(tf_keras.callbacks.Callback):
    """Logs each epoch's metrics and duration through `logging`."""

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        metrics = ", ".join(f"{k} {v:.4f}" for k, v in (logs or {}).items())
        seconds = time.perf_counter() - self._start
        logger.info("Epoch %d: %s (%.1f s).", epoch + 1, metrics, seconds)


def train(model, train_data, validation_data, epochs: int, log_dir: Path, verbose: int = 0):
    """Fits a compiled model, evaluating on validation after each epoch.

    Args:
        model: A compiled Keras model, built under the run's strategy scope.
        train_data: Shuffled `(features, labels)` batches.
        validation_data: `(features, labels)` batches.
        epochs: Passes over `train_data`.
        log_dir: Where TensorBoard writes `train/` and `validation/` event files.
        verbose: Keras progress output (0 silent, 1 progress bar, 2 a line per epoch).

    Returns:
        The metrics per epoch, as Keras' `History.history`.
    """
    callbacks = [
        tf_keras.callbacks.TensorBoard(log_dir=str(log_dir), update_freq="epoch"),
        _EpochLogger(),
    ]
    history = model.fit(
        train_data,
        validation_data=validation_data,
        epochs=epochs,
        callbacks=callbacks,
        verbose=verbose,
    )
    return {key: [float(v) for v in values] for key, values in history.history.items()}
