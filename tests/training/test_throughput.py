"""Tests of the speed meter's accounting of steps and compiling."""

import pytest

from tf_finetune.data.batching import Batches, PaddingStats
from tf_finetune.training import throughput


def metered(widths, seconds, compiles_per_shape, monkeypatch):
    """Runs a `SpeedMeter` over steps of the given batch lengths and durations."""
    batches = Batches(
        dataset=None, steps=len(widths), epoch_padding=[PaddingStats(8, 8, 8)], widths=widths
    )
    meter = throughput.SpeedMeter(batches, compiles_per_shape)
    clock = iter([t for step in seconds for t in (0.0, step)])
    monkeypatch.setattr(throughput.time, "perf_counter", lambda: next(clock))
    meter.on_epoch_begin(0)
    for step in range(len(widths)):
        meter.on_train_batch_begin(step)
        meter.on_train_batch_end(step)
    return meter


def test_under_xla_the_first_step_of_each_length_is_compiling(monkeypatch):
    # Lengths 8 and 16 each compile once; the later steps of each take about 1 s.
    widths = [8, 8, 16, 8, 16, 16]
    meter = metered(widths, [5.0, 1.0, 4.0, 1.0, 1.2, 0.8], True, monkeypatch)
    assert meter.compiled_shapes == 2
    assert meter.tracing_seconds == pytest.approx((5.0 - 1.0) + (4.0 - 1.0))
    assert meter.step_seconds == [1.0, 1.0, 1.2, 0.8]  # what the steady rate is taken from


def test_without_xla_only_the_first_step_is_tracing(monkeypatch):
    widths = [8, 8, 16, 8, 16, 16]
    meter = metered(widths, [5.0, 1.0, 1.1, 1.0, 1.2, 0.8], False, monkeypatch)
    assert meter.compiled_shapes == 1
    assert meter.tracing_seconds == pytest.approx(5.0 - 1.0)
    assert meter.step_seconds == [1.0, 1.1, 1.0, 1.2, 0.8]
