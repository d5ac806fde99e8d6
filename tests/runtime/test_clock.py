"""Tests of the phase clock that accounts for a run's time."""

import subprocess
import sys
import time

import pytest

from tf_finetune.runtime.clock import PhaseClock, describe, process_age


def test_laps_add_up_and_training_splits_into_compile_train_and_validation(monkeypatch):
    from tf_finetune.runtime import clock as module

    monkeypatch.setattr(module, "_started", False)
    clock = PhaseClock.for_run()
    assert clock.seconds["start-up"] == pytest.approx(process_age(), abs=1.0)
    assert "start-up" not in PhaseClock.for_run().seconds  # a second run of the process
    assert "start-up" not in PhaseClock().seconds  # a clock outside a run
    time.sleep(0.05)
    assert clock.lap("load") >= 0.05
    clock.lap("load")  # a phase met twice adds up
    time.sleep(0.1)
    clock.split_training({"train_seconds": 0.06, "tracing_seconds": 0.02})
    assert clock.seconds["compile"] == 0.02
    assert clock.seconds["train"] == pytest.approx(0.04)
    assert clock.seconds["validation"] >= 0.04
    line = describe(clock.seconds)
    assert line.startswith("Time: start-up ") and "compile 0.0 s" in line
    assert line.endswith(f"; total {sum(clock.seconds.values()):.1f} s.")


def test_process_age_counts_from_the_process_start():
    code = (
        "import time; time.sleep(0.6); from tf_finetune.runtime.clock import process_age; "
        "print(process_age())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert 0.6 <= float(out.stdout) < 5
