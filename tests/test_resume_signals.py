"""Resume after real signals: kill -9, SIGTERM and stops, each in a subprocess of its own.

Split from test_resume.py, whose helpers these share, so the two files can run on
different test workers: together they were the suite's longest file.
"""

import json
import os
from pathlib import Path

import pytest
from test_resume import TOTAL_STEPS, _cli, _kept, _run_path, _steps_in_tensorboard

from tf_finetune.config import load_config
from tf_finetune.pipeline import fit


@pytest.fixture
def options(fit_options):
    """test_resume.py's run: checkpoints every 5 steps."""
    return dict(fit_options, checkpoint_steps=5)


def test_kill_9_mid_epoch_then_resume_trains_the_same_steps(options, tmp_path):
    options = dict(options, log_steps=2)
    killed = _cli(options, fault="step:23=kill")
    assert killed.returncode == -9
    assert _kept(options) == ["ckpt-16", "ckpt-20"]  # epoch 1's end, then step 20
    assert not os.path.exists(os.path.join(_run_path(options), "1"))

    resumed = _cli(options, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    run_path = tmp_path / "runs" / "tiny"
    stats = json.loads((run_path / "training_stats.json").read_text())
    # Steps 21-23 were lost with the process and trained again: 20 + 44 = 64.
    assert stats["resumed_from_step"] == 20
    assert stats["optimizer_steps"] == TOTAL_STEPS
    assert len(stats["per_epoch"]) == 4
    assert _steps_in_tensorboard(run_path) == [0, 1, 2, 3]
    # Step 22's point died with the process (it is written with the next checkpoint);
    # the resumed run logged it again, once.
    assert _steps_in_tensorboard(run_path, "step_loss") == list(range(2, TOTAL_STEPS + 1, 2))
    assert _steps_in_tensorboard(run_path, "eval_macro_f1", "validation") == [0, 1, 2, 3]
    assert not (run_path / "checkpoints").exists()  # removed once the export is done
    # The resumed run learned the task as an uninterrupted one does (0.97).
    assert json.loads((run_path / "report.json").read_text())["accuracy"] >= 0.9


def test_sigterm_finishes_the_step_saves_and_says_how_to_resume(options):
    stopped = _cli(options, fault="step:10=term")
    assert stopped.returncode == 143
    message = stopped.stderr.strip().splitlines()[-1]
    assert message.startswith("Error: Stopped by SIGTERM after step 10; saved ")
    assert message.endswith("Run the same command with --resume to continue.")
    assert _kept(options)[-1] == "ckpt-10"

    resumed = fit(load_config(overrides=options), resume=True)
    assert resumed.stats["resumed_from_step"] == 10
    assert resumed.stats["optimizer_steps"] == TOTAL_STEPS


def test_sigterm_before_training_says_nothing_was_written(options, tmp_path):
    stopped = _cli(options, fault="data=term")
    assert stopped.returncode == 143, stopped.stderr[-2000:]
    assert (
        stopped.stderr.strip().splitlines()[-1] == "Error: Stopped by SIGTERM. Nothing was written."
    )
    assert not os.path.exists(options["output_dir"])


def test_stops_after_training_leave_no_staging_and_resume_finishes(options):
    run_path = Path(_run_path(options))
    killed = _cli(options, fault="export=kill")  # SIGKILL inside the export
    assert killed.returncode == -9
    assert [p.name for p in run_path.glob(".tmp-1-*")]  # the killed export's staging
    assert (run_path / "report.json").is_file() and not (run_path / "1").exists()

    stopped = _cli(options, "--resume", fault="report=term")
    assert stopped.returncode == 143, stopped.stderr[-2000:]
    assert stopped.stderr.strip().splitlines()[-1] == (
        f"Error: Stopped by SIGTERM. The run's checkpoints in {run_path} are kept: run the "
        "same command with --resume to continue."
    )
    # The new run owned the directory: the killed export's staging is gone, and the
    # stopped report step left none of its own.
    assert not [p.name for p in run_path.iterdir() if p.name.startswith((".tmp", ".lock"))]

    resumed = fit(load_config(overrides=options), resume=True)
    assert resumed.stats["optimizer_steps"] == TOTAL_STEPS
    assert sorted(p.name for p in run_path.iterdir() if p.name.startswith(".")) == []
    assert (run_path / "1" / "saved_model.pb").is_file()
