"""Tests of claiming run directories: overwrite, leftovers, refusals and their messages."""

import os
from pathlib import Path

import pytest

from tf_finetune.errors import ConfigError
from tf_finetune.runtime import run_dir

FINISHED = {
    "report.json": '{"accuracy": 0.9}\n',
    "fit_config.yaml": "epochs: 3\n",
    "1/saved_model.pb": "graph",
    "logs/events.out": "events",
}


def _make_run(path: Path, files: dict[str, str]) -> dict[str, bytes]:
    for name, text in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text, encoding="utf-8")
    return _snapshot(path)


def _snapshot(path: Path) -> dict[str, bytes]:
    """Every file under `path` (the lock aside) with its bytes."""
    return {
        str(p.relative_to(path)): p.read_bytes()
        for p in sorted(path.rglob("*"))
        if p.is_file() and p.name != run_dir.LOCK_NAME
    }


def _new_run_writes(path: Path) -> None:
    (path / "fit_config.yaml").write_text("epochs: 1\n", encoding="utf-8")
    (path / "logs").mkdir()
    (path / "logs" / "new.events").write_text("new", encoding="utf-8")


def _first_checkpoint(path: Path) -> None:
    (path / "checkpoints").mkdir()
    (path / "checkpoints" / run_dir.CHECKPOINT_INDEX).write_text('{"checkpoints": []}\n')


def test_overwrite_changes_nothing_until_training_begins(tmp_path):
    before = _make_run(tmp_path, FINISHED)
    run = run_dir.claim(tmp_path, overwrite=True)
    assert _snapshot(tmp_path) == before
    assert run.abandon() == f"{tmp_path} was left as it was."
    assert _snapshot(tmp_path) == before
    assert not (tmp_path / run_dir.LOCK_NAME).exists()


def test_overwrite_that_fails_before_its_first_checkpoint_puts_the_old_run_back(tmp_path):
    before = _make_run(tmp_path, FINISHED)
    run = run_dir.claim(tmp_path, overwrite=True)
    run.begin_training()
    _new_run_writes(tmp_path)
    assert not (tmp_path / "report.json").exists()
    assert run.abandon() == f"The previous run in {tmp_path} was kept as it was."
    assert _snapshot(tmp_path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "1",
        "fit_config.yaml",
        "logs",
        "report.json",
    ]


def test_overwrite_deletes_the_old_run_once_the_new_one_has_a_checkpoint(tmp_path):
    _make_run(tmp_path, FINISHED)
    run = run_dir.claim(tmp_path, overwrite=True)
    run.begin_training()
    _new_run_writes(tmp_path)
    _first_checkpoint(tmp_path)
    run.commit()
    note = run.abandon()  # e.g. stopped later: the new run is the one kept
    assert "checkpoints in" in note and "--resume" in note
    assert sorted(_snapshot(tmp_path)) == [
        "checkpoints/checkpoints.json",
        "fit_config.yaml",
        "logs/new.events",
    ]


@pytest.mark.parametrize("checkpointed", [False, True])
def test_an_overwrite_killed_midway_is_settled_by_the_next_claim(tmp_path, checkpointed):
    before = _make_run(tmp_path, FINISHED)
    run = run_dir.claim(tmp_path, overwrite=True)
    run.begin_training()
    _new_run_writes(tmp_path)
    if checkpointed:
        _first_checkpoint(tmp_path)
    run._lock_handle.close()  # as if killed: the kernel drops the lock, nothing else runs
    again = run_dir.claim(tmp_path, resume=checkpointed, overwrite=not checkpointed)
    if checkpointed:  # the new run got its checkpoint: the old one is gone for good
        assert "report.json" not in _snapshot(tmp_path)
        assert "logs/new.events" in _snapshot(tmp_path)
    else:  # it did not: the old run is back
        assert _snapshot(tmp_path) == before
    assert not list(tmp_path.glob(run_dir.RETIRED_PREFIX + "*"))
    again.release()


def test_leftovers_of_a_killed_process_are_removed_by_the_next_owner(tmp_path):
    _make_run(tmp_path, {"checkpoints/checkpoints.json": "{}", "checkpoints/ckpt-5.index": "x"})
    for leftover in (".tmp-1-0a1b2c3d", ".tmp-files-0a1b2c3d", "checkpoints/.tmp-x-1"):
        (tmp_path / leftover).mkdir(parents=True)
        (tmp_path / leftover / "part").write_text("half", encoding="utf-8")
    (tmp_path / ".tmp-fit_config.yaml-0a1b2c3d").write_text("half", encoding="utf-8")
    run = run_dir.claim(tmp_path, resume=True)
    assert sorted(_snapshot(tmp_path)) == [
        "checkpoints/checkpoints.json",
        "checkpoints/ckpt-5.index",
    ]
    run.release()


def test_a_refused_claim_leaves_no_lock_behind(tmp_path):
    before = _make_run(tmp_path, FINISHED)
    with pytest.raises(ConfigError, match="already exists and is not empty"):
        run_dir.claim(tmp_path)
    with pytest.raises(ConfigError, match="holds a finished run"):
        run_dir.claim(tmp_path, resume=True)
    assert not (tmp_path / run_dir.LOCK_NAME).exists()
    assert _snapshot(tmp_path) == before


@pytest.mark.parametrize(
    "files, message",
    [
        (FINISHED, r"holds a finished run: there is nothing to resume\. .*--overwrite instead"),
        (
            {"fit_config.yaml": "epochs: 3\n", "logs/events.out": "x"},
            r"has no checkpoint to resume from \(the run stopped before its first one\)",
        ),
        ({"checkpoints/ckpt-5.index": "x"}, r"has no checkpoint to resume from"),
    ],
)
def test_resume_says_why_there_is_nothing_to_resume(tmp_path, files, message):
    _make_run(tmp_path, files)
    with pytest.raises(ConfigError, match=message):
        run_dir.claim(tmp_path, resume=True)


def test_resume_of_a_run_that_does_not_exist_leaves_nothing(tmp_path):
    with pytest.raises(ConfigError, match=r"does not exist: there is no run to resume"):
        run_dir.claim(tmp_path / "runs" / "new", resume=True)
    assert not (tmp_path / "runs").exists()


def test_a_fresh_run_that_fails_before_training_leaves_nothing(tmp_path):
    run = run_dir.claim(tmp_path / "runs" / "new")
    assert run.abandon() == "Nothing was written."
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("where", ["file as output dir", "file as run name", "under /proc"])
def test_a_run_directory_that_cannot_be_made_is_one_config_error(tmp_path, where):
    (tmp_path / "taken").write_text("a file", encoding="utf-8")
    path = {
        "file as output dir": tmp_path / "taken" / "run",
        "file as run name": tmp_path / "taken",
        "under /proc": Path("/proc/tf-finetune-test/run"),
    }[where]
    with pytest.raises(ConfigError, match=rf"Cannot create run directory {path}: .*--output-dir"):
        run_dir.claim(path)
    assert (tmp_path / "taken").read_text(encoding="utf-8") == "a file"
    assert os.listdir(tmp_path) == ["taken"]
