"""Never losing a run: checkpoints, resume, clean stops, atomic artefacts, run locks.

The tiny fit runs 4 epochs of 16 steps (128 rows, batch 8): 64 optimizer steps. With
`checkpoint_steps=5` it saves after steps 5, 10, 15, at each epoch end (16, 32, ...)
and every fifth step in between. Faults come from `TF_FINETUNE_FAULT` (see
`tf_finetune.runtime.atomic.fault_point`): an `OSError` raised in-process, or a real SIGKILL /
SIGTERM in a subprocess.
"""

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import tiny_fit_options

from tf_finetune.config import load_config
from tf_finetune.errors import (
    CheckpointError,
    ConfigError,
    DataError,
    ExportError,
    TrainingDiverged,
    TrainingInterrupted,
)
from tf_finetune.pipeline import fit
from tf_finetune.runtime import run_dir

TOTAL_STEPS = 64


@pytest.fixture
def options(fit_options):
    return dict(fit_options, checkpoint_steps=5)


@pytest.fixture(scope="module")
def crashed_template(tiny_checkpoint, tmp_path_factory):
    """A run stopped by an `OSError` in step 23, checkpoints 16 and 20 kept, made once.

    Returns the options it ran with, whose folder `crashed` restores before each test,
    and a copy of that folder as the crash left it.
    """
    folder = tmp_path_factory.mktemp("crashed")
    work = folder / "work"
    work.mkdir()
    options = dict(tiny_fit_options(tiny_checkpoint, work), checkpoint_steps=5)
    with pytest.MonkeyPatch.context() as monkeypatch:
        _crash_at(monkeypatch, options, "step:23")
    shutil.copytree(work, folder / "template")
    return options, folder / "template"


@pytest.fixture
def crashed(crashed_template):
    """The options of a run crashed in step 23, its files as the crash left them.

    The run is restored in place (its paths are in its stored settings), so a test may
    change or resume it.
    """
    options, template = crashed_template
    work = Path(options["output_dir"]).parent
    shutil.rmtree(work)
    shutil.copytree(template, work)
    return dict(options)


def _run_path(options):
    return os.path.join(options["output_dir"], options["run_name"])


def _kept(options):
    index = os.path.join(_run_path(options), "checkpoints", "checkpoints.json")
    with open(index, encoding="utf-8") as handle:
        return json.load(handle)["checkpoints"]


def _crash_at(monkeypatch, options, place):
    """Runs fit in-process until the injected OSError at `place`."""
    monkeypatch.setenv("TF_FINETUNE_FAULT", place)
    with pytest.raises((ExportError, CheckpointError), match="injected"):
        fit(load_config(overrides=options))
    monkeypatch.delenv("TF_FINETUNE_FAULT")


def _cli(options, *extra, fault=None):
    args = [sys.executable, "-m", "tf_finetune", "fit"]
    for key, value in options.items():
        args += ["--" + key.replace("_", "-"), str(value)]
    env = dict(os.environ)
    if fault:
        env["TF_FINETUNE_FAULT"] = fault
    return subprocess.run(
        [*args, *extra],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        stdin=subprocess.DEVNULL,
    )


def _tensorboard_points(run_path, tag="epoch_loss", split="train"):
    """Returns (step, value) of every `tag` event in the run's `split` logs."""
    import tensorflow as tf

    points = []
    for path in sorted((Path(run_path) / "logs" / split).glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            points += [
                (event.step, float(tf.make_ndarray(value.tensor)))
                for value in event.summary.value
                if value.tag == tag
            ]
    return points


def _steps_in_tensorboard(run_path, tag="epoch_loss", split="train"):
    return [step for step, _ in _tensorboard_points(run_path, tag, split)]


def test_the_same_command_without_resume_is_refused(crashed):
    with pytest.raises(ConfigError, match="Pass --resume to continue its run") as error:
        fit(load_config(overrides=crashed))
    assert error.value.exit_code == 3
    assert _kept(crashed) == ["ckpt-16", "ckpt-20"]  # the crashed run is untouched


def test_a_signal_in_an_epoch_last_step_stops_after_its_validation(options, monkeypatch):
    monkeypatch.setenv("TF_FINETUNE_FAULT", "step:16=term")  # SIGTERM to this process
    with pytest.raises(TrainingInterrupted, match="at the end of an epoch") as error:
        fit(load_config(overrides=options))
    monkeypatch.delenv("TF_FINETUNE_FAULT")
    assert error.value.exit_code == 143
    assert _kept(options)[-1] == "ckpt-16"
    resumed = fit(load_config(overrides=options), resume=True)
    assert resumed.stats["resumed_from_step"] == 16
    assert resumed.stats["optimizer_steps"] == TOTAL_STEPS
    assert len(resumed.history["val_loss"]) == 4


def test_resumed_epoch_keeps_the_interrupted_epoch_metrics(crashed):
    logged = dict(_tensorboard_points(_run_path(crashed)))  # epoch 1, by the crashed run
    assert list(logged) == [0]
    resumed = fit(load_config(overrides=crashed), resume=True)
    # Epoch 1's figures come from the checkpoint; epochs 2-4 from this process.
    assert len(resumed.history["loss"]) == 4
    assert resumed.history["loss"][0] == pytest.approx(logged[0], rel=1e-6)
    assert resumed.history["val_accuracy"][-1] >= 0.9


def test_resume_refuses_changed_model_or_data_settings(crashed):
    options = crashed
    changed = dict(options, batch_size=4, max_length=16)
    with pytest.raises(ConfigError) as error:
        fit(load_config(overrides=changed), resume=True)
    message = str(error.value)
    assert "max_length: " in message and "-> 16" in message
    assert "batch_size: 8 -> 4" in message
    assert "fit_config.yaml" in message

    # New rows in the training file are a data change too.
    with open(options["train_file"], "a", encoding="utf-8") as handle:
        handle.write("a good film .,pos\n")
    with pytest.raises(ConfigError, match="train data changed"):
        fit(load_config(overrides=options), resume=True)


def test_a_run_resumes_with_the_auto_choices_it_began_with(crashed, monkeypatch, caplog):
    import yaml

    from tf_finetune.runtime import distribution

    options = crashed
    # Begun by a version without length buckets or truncation strategies, and whose
    # "auto" precision was float32 where this one picks bfloat16.
    stored_path = Path(_run_path(options)) / "fit_config.yaml"
    stored = yaml.safe_load(stored_path.read_text())
    assert (stored["mixed_precision"], stored["truncation"]) == ("float32", "head")
    del stored["length_buckets"], stored["truncation"], stored["stride"], stored["problem"]
    stored_path.write_text(yaml.safe_dump(stored, sort_keys=False))
    newer = distribution.resolve_precision
    monkeypatch.setattr(
        distribution,
        "resolve_precision",
        lambda setting, hidden=None: "mixed_bfloat16" if setting == "auto" else newer(setting),
    )
    # Asked for outright, another precision is still a change.
    with pytest.raises(ConfigError, match="mixed_precision: 'float32' -> 'mixed_bfloat16'"):
        fit(load_config(overrides=dict(options, mixed_precision="mixed_bfloat16")), resume=True)
    with caplog.at_level(logging.INFO, logger="tf_finetune"):
        resumed = fit(load_config(overrides=options), resume=True)
    assert resumed.stats["optimizer_steps"] == TOTAL_STEPS
    assert "run began with: mixed_precision float32" in caplog.text
    written = yaml.safe_load(stored_path.read_text())
    assert (written["mixed_precision"], written["length_buckets"]) == ("float32", 0)
    assert written["truncation"] == "head"


def test_more_epochs_may_be_given_on_resume(crashed):
    options = crashed
    resumed = fit(load_config(overrides=dict(options, epochs=5)), resume=True)
    assert resumed.stats["optimizer_steps"] == 80
    assert len(resumed.history["loss"]) == 5


def test_a_corrupt_latest_checkpoint_falls_back_to_the_one_before(crashed, caplog):
    options = crashed
    checkpoints = tmp = os.path.join(_run_path(options), "checkpoints")
    data = os.path.join(tmp, "ckpt-20.data-00000-of-00001")
    with open(data, "r+b") as handle:
        handle.seek(os.path.getsize(data) // 2)
        handle.write(b"\xff" * 64)
    with caplog.at_level(logging.WARNING, logger="tf_finetune"):
        resumed = fit(load_config(overrides=options), resume=True)
    assert "ckpt-20 cannot be read" in caplog.text
    assert resumed.stats["resumed_from_step"] == 16
    assert resumed.stats["optimizer_steps"] == TOTAL_STEPS
    assert not os.path.exists(checkpoints)


def test_no_readable_checkpoint_names_the_newest(crashed):
    options = crashed
    folder = os.path.join(_run_path(options), "checkpoints")
    for name in os.listdir(folder):
        if name.startswith("ckpt-") and name.endswith(".index"):
            with open(os.path.join(folder, name), "wb") as handle:
                handle.write(b"not a checkpoint index")
    with pytest.raises(CheckpointError, match=r"can be read \(newest: ckpt-20\)"):
        fit(load_config(overrides=options), resume=True)


def test_a_crash_while_writing_a_checkpoint_keeps_the_previous(options, monkeypatch):
    monkeypatch.setenv("TF_FINETUNE_FAULT", "checkpoint:10")
    with pytest.raises(CheckpointError, match=r"ckpt-10: .*injected.*--resume"):
        fit(load_config(overrides=options))
    monkeypatch.delenv("TF_FINETUNE_FAULT")
    assert _kept(options) == ["ckpt-5"]  # ckpt-10's files may exist; it is not listed
    resumed = fit(load_config(overrides=options), resume=True)
    assert resumed.stats["resumed_from_step"] == 5
    assert resumed.stats["optimizer_steps"] == TOTAL_STEPS


def test_a_failed_first_checkpoint_does_not_claim_an_earlier_one(options, monkeypatch):
    monkeypatch.setenv("TF_FINETUNE_FAULT", "checkpoint:5")
    with pytest.raises(CheckpointError) as raised:
        fit(load_config(overrides=options))
    monkeypatch.delenv("TF_FINETUNE_FAULT")
    message = str(raised.value)
    assert "intact" not in message and "--resume" not in message
    assert message.endswith(
        f"No checkpoint had been written; {_run_path(options)} holds the run's logs only. Run "
        "the same command with --overwrite to start again."
    )
    with pytest.raises(ConfigError, match="stopped before its first one"):
        fit(load_config(overrides=options), resume=True)


def test_a_non_finite_loss_stops_and_saves_nothing_after_it(options):
    with pytest.raises(TrainingDiverged) as error:
        fit(load_config(overrides=dict(options, learning_rate=1e30)))
    message = str(error.value)
    assert message.startswith("The training loss became nan at step ")
    bad_step = int(message.split(" at step ")[1].split(" ")[0])
    saved = [int(name.split("-")[1]) for name in _kept(options)] if bad_step > 5 else []
    assert all(step < bad_step for step in saved)
    assert not os.path.exists(os.path.join(_run_path(options), "1"))


def test_a_failed_export_writes_nothing_and_resume_finishes_it(options, monkeypatch):
    monkeypatch.setenv("TF_FINETUNE_FAULT", "export")
    with pytest.raises(ExportError, match=r"No space left on device.*--resume"):
        fit(load_config(overrides=options))
    monkeypatch.delenv("TF_FINETUNE_FAULT")
    run_path = _run_path(options)
    assert not os.path.exists(os.path.join(run_path, "1"))
    assert not [name for name in os.listdir(run_path) if name.startswith(".tmp")]
    # Training had finished: the resumed run only reports and exports.
    resumed = fit(load_config(overrides=options), resume=True)
    assert resumed.stats["optimizer_steps"] == TOTAL_STEPS
    assert os.path.isdir(os.path.join(run_path, "1"))


def test_a_failed_report_write_leaves_no_partial_file(options, monkeypatch):
    monkeypatch.setenv("TF_FINETUNE_FAULT", "rename:files")
    with pytest.raises(ExportError):
        fit(load_config(overrides=options))
    names = os.listdir(_run_path(options))
    assert "report.json" not in names and "tf_model.h5" not in names
    assert not [name for name in names if name.startswith(".tmp")]


def test_overwrite_starts_the_run_again(crashed):
    options = crashed
    rerun = fit(load_config(overrides=options), overwrite=True)
    assert rerun.stats["resumed_from_step"] == 0
    assert rerun.stats["optimizer_steps"] == TOTAL_STEPS
    # The crashed run's checkpoints were replaced, and nothing of it is left aside.
    assert not [p for p in Path(_run_path(options)).iterdir() if p.name.startswith(".")]
    assert not (Path(_run_path(options)) / "checkpoints").exists()


def test_resume_without_a_checkpoint_or_of_a_finished_run_is_refused(options, trained_run):
    with pytest.raises(ConfigError, match="does not exist: there is no run to resume"):
        fit(load_config(overrides=options), resume=True)
    assert not os.path.exists(options["output_dir"])  # nothing left behind
    before = sorted(p.name for p in trained_run.run_dir.iterdir())
    with pytest.raises(ConfigError, match="holds a finished run"):
        fit(load_config(trained_run.run_dir / "fit_config.yaml"), resume=True)
    assert sorted(p.name for p in trained_run.run_dir.iterdir()) == before


def test_a_second_fit_on_a_run_directory_in_use_is_refused_at_once(options, tmp_path):
    path = tmp_path / "runs" / "tiny"
    held = run_dir.claim(path)
    try:
        with pytest.raises(
            ConfigError, match=f"in use by another tf-finetune process \\(PID {os.getpid()}\\)"
        ):
            fit(load_config(overrides=options))
    finally:
        held.release()


def test_a_stale_lock_of_a_dead_process_is_taken_over(tmp_path):
    path = tmp_path / "run"
    path.mkdir()
    (path / run_dir.LOCK_NAME).write_text("999999\n")  # no process holds it
    claimed = run_dir.claim(path)
    assert (path / run_dir.LOCK_NAME).read_text().strip() == str(os.getpid())
    claimed.release()
    assert not (path / run_dir.LOCK_NAME).exists()


def test_bad_input_leaves_the_output_folder_as_it_was(options, tmp_path):
    with pytest.raises(DataError, match="review"):
        fit(load_config(overrides=dict(options, text_column="review")))
    assert not os.path.exists(options["output_dir"])
