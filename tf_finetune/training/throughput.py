"""Measuring training speed: samples and tokens per second, padding, tracing, memory.

`SpeedMeter` times each training step (validation excluded) and adds its figures
to the epoch's logs, so Keras' History, the TensorBoard callback that follows it and
the epoch log line all carry them. `summarize` turns the epochs into the run's
`training_stats.json`.
"""

from __future__ import annotations

import math
import time

import numpy as np
import tf_keras

from tf_finetune.runtime.memory import current_rss_mib, peak_rss_mib

# Keys the meter adds to each epoch's logs.
EPOCH_KEYS = (
    "samples_per_second",
    "real_tokens_per_second",
    "padded_tokens_per_second",
    "padding_share",
    "train_seconds",
    "rss_mib",
)


class SpeedMeter(tf_keras.callbacks.Callback):
    """Adds speed, padding and memory figures to each epoch's logs.

    Args:
        batches: The training `tf_data.Batches`, whose `stats(epoch)` gives the
            examples and real and padded tokens of each epoch.
        compiles_per_shape: The train step is compiled for each new batch shape (XLA):
            the first step of every padded length counts as compiling, not as a step.
    """

    def __init__(self, batches, compiles_per_shape: bool = False):
        super().__init__()
        self._batches = batches
        self._widths = batches.widths if compiles_per_shape else None
        self.step_seconds: list[float] = []
        self.first_step_seconds: float | None = None
        # The first step of each batch length, and the other steps of each length.
        self._first_of: dict[int, float] = {}
        self._later_of: dict[int, list[float]] = {}
        self._steps = 0
        self._epoch_seconds = 0.0
        self._carried = 0.0

    @property
    def epoch_seconds(self) -> float:
        """Training seconds of the current epoch so far."""
        return self._epoch_seconds

    def carry_seconds(self, seconds: float) -> None:
        """Counts `seconds` already spent on the next epoch (a resumed partial epoch)."""
        self._carried = seconds

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_seconds, self._carried = self._carried, 0.0

    def on_train_batch_begin(self, batch, logs=None):
        self._step_start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        seconds = time.perf_counter() - self._step_start
        self._epoch_seconds += seconds
        # Without per-shape compiling, every step is of one kind: key 0.
        width = self._widths[self._steps] if self._widths is not None else 0
        self._steps += 1
        if self.first_step_seconds is None:
            self.first_step_seconds = seconds
        if width not in self._first_of:
            self._first_of[width] = seconds
        else:
            self._later_of.setdefault(width, []).append(seconds)
            self.step_seconds.append(seconds)

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        stats = self._batches.padding(epoch)
        seconds = max(self._epoch_seconds, 1e-9)
        logs["samples_per_second"] = stats.examples / seconds
        logs["real_tokens_per_second"] = stats.real_tokens / seconds
        logs["padded_tokens_per_second"] = stats.padded_tokens / seconds
        logs["padding_share"] = stats.padding_share
        logs["train_seconds"] = self._epoch_seconds
        logs["rss_mib"] = current_rss_mib()

    @property
    def tracing_seconds(self) -> float:
        """Time the first step of each shape took beyond a typical step of its shape:
        tracing, graph optimisation and, under XLA, compiling."""
        typical = float(np.median(self.step_seconds)) if self.step_seconds else 0.0
        return sum(
            max(first - float(np.median(self._later_of.get(width, [typical]))), 0.0)
            for width, first in self._first_of.items()
        )

    @property
    def compiled_shapes(self) -> int:
        """The batch shapes the train step was compiled for (1 unless per shape)."""
        return len(self._first_of)


def summarize(history: dict, meter: SpeedMeter, batches, model) -> dict:
    """Returns the run's speed figures: totals over all epochs, then each epoch's logs.

    Args:
        history: Keras metrics per epoch, including the meter's keys.
        meter: The run's `SpeedMeter`.
        batches: The training `tf_data.Batches`.
        model: The trained Keras model (for the count of traced train functions).
    """
    epochs = len(history.get("train_seconds", []))
    seconds = sum(history.get("train_seconds", []))
    stats = [batches.padding(epoch) for epoch in range(epochs)]
    examples = sum(s.examples for s in stats)
    real = sum(s.real_tokens for s in stats)
    padded = sum(s.padded_tokens for s in stats)
    return {
        "epochs": epochs,
        "train_seconds": seconds,
        "samples_per_second": examples / seconds if seconds else 0.0,
        "real_tokens_per_second": real / seconds if seconds else 0.0,
        "padded_tokens_per_second": padded / seconds if seconds else 0.0,
        "padding_share": 1.0 - real / padded if padded else 0.0,
        "tracing_seconds": meter.tracing_seconds,
        "compiled_shapes": meter.compiled_shapes,
        "median_step_seconds": float(np.median(meter.step_seconds)) if meter.step_seconds else None,
        **steady_rate(
            meter.step_seconds, math.ceil(stats[0].examples / batches.steps) if stats else 0
        ),
        "traced_train_functions": _tracing_count(model),
        "peak_rss_mib": peak_rss_mib(),
        "per_epoch": [
            {key: values[epoch] for key, values in history.items()} for epoch in range(epochs)
        ],
    }


# Consecutive windows the steps after the first are cut into for the steady rate's spread.
_WINDOWS = 5


def steady_rate(step_seconds: list[float], batch: int) -> dict:
    """Samples per second after warm-up, as the median of windows of steps, with its range.

    The first step (tracing, first allocations) is left out: in a short run it is a
    large share of the time, and it is slowest in the first run of a process, so
    samples/s over all steps depends on the order of a comparison. The other steps are
    cut into `_WINDOWS` consecutive windows; their rates' spread is the noise a
    comparison must exceed to call one model faster.

    Args:
        step_seconds: Time of each step after the first (of its shape, under XLA).
        batch: Examples per step (the global batch).

    Returns:
        `steady_samples_per_second` and its `steady_low` and `steady_high`; all None
        with fewer than two steps after the first.
    """
    if len(step_seconds) < 2 or batch <= 0:
        return dict.fromkeys(("steady_samples_per_second", "steady_low", "steady_high"))
    windows = np.array_split(np.asarray(step_seconds), min(_WINDOWS, len(step_seconds)))
    rates = [batch * len(window) / max(float(window.sum()), 1e-9) for window in windows]
    return {
        "steady_samples_per_second": float(np.median(rates)),
        "steady_low": float(min(rates)),
        "steady_high": float(max(rates)),
    }


def describe(stats: dict) -> str:
    """Returns a one-line account of `summarize`'s figures."""
    return (
        f"Trained {stats['epochs']} epoch(s) in {stats['train_seconds']:.1f} s: "
        f"{stats['samples_per_second']:.1f} samples/s, "
        f"{stats['real_tokens_per_second']:,.0f} real tokens/s, "
        f"{100 * stats['padding_share']:.1f}% padding, "
        f"{stats['tracing_seconds']:.1f} s tracing"
        f"{_shapes(stats.get('compiled_shapes'))}, "
        f"peak memory {stats['peak_rss_mib']:,.0f} MiB."
    )


def _shapes(count: int | None) -> str:
    return f" and compiling ({count} batch shapes)" if count and count > 1 else ""


def _tracing_count(model) -> int | None:
    function = getattr(model, "train_function", None)
    counter = getattr(function, "experimental_get_tracing_count", None)
    return int(counter()) if counter else None
