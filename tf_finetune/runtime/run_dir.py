"""Claiming a run directory: never reusing one by accident, never sharing one.

A run directory that exists and is not empty is used only with `resume=True`
(continue the run from its last checkpoint) or `overwrite=True` (replace its run). An
overwrite changes nothing until the new run has passed every check before training;
the old run is then moved aside, put back if the new one fails before its first
checkpoint, and deleted once it has one. A lock file (`.lock`, holding the owner's
PID) keeps a second `fit` out while the first runs; the lock is an `fcntl` lock, so
the kernel releases it when its owner dies, even by SIGKILL, and a stale lock file is
simply taken over.

In a multi-worker run only the chief claims the run directory. Every other worker
runs the same steps (saving involves all of them) into a `scratch` directory of its
own, removed when it finishes (or by the next worker on the machine, when it was
killed), and reads the chief's checkpoints when resuming.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import tempfile
import uuid
from pathlib import Path

from tf_finetune.errors import ConfigError, short_reason

LOCK_NAME = ".lock"
CHECKPOINT_DIR = "checkpoints"
# The checkpoint list, written once a checkpoint is complete (see checkpointing).
CHECKPOINT_INDEX = "checkpoints.json"
SCRATCH_PREFIX = "tf-finetune-worker-"
RETIRED_PREFIX = ".replaced-"

logger = logging.getLogger(__name__)


class RunDirectory:
    """A run directory this process holds the lock of.

    Attributes:
        path: The run directory.
        created: The outermost directory this process created for it (the run
            directory, or an output folder that did not exist either), or None.
        resuming: Whether the directory holds a run to continue.
        source: The run directory a resumed run reads its config and checkpoints from:
            `path` itself, or for a scratch directory the chief's run directory.
        scratch: Whether `path` is a non-chief worker's temporary directory, removed
            on release whatever happened.
        previous: The entries of the run that `overwrite` replaces. They stay in place
            until `begin_training`, and are deleted only by `commit`.
    """

    def __init__(
        self,
        path: Path,
        created: Path | None,
        resuming: bool,
        lock_handle,
        source: Path | None = None,
        scratch: bool = False,
        previous: list[Path] | None = None,
    ):
        self.path = path
        self.created = created
        self.resuming = resuming
        self.source = source or path
        self.scratch = scratch
        self.previous = list(previous or [])
        self._lock_handle = lock_handle
        self._retired: Path | None = None
        self._started = False

    def begin_training(self) -> None:
        """Marks that every check before training passed and training starts.

        With `overwrite`, the previous run is moved aside into a hidden folder of the
        run directory, from where `abandon` puts it back until `commit` deletes it.
        """
        if self.previous:
            retired = self.path / f"{RETIRED_PREFIX}{uuid.uuid4().hex[:8]}"
            retired.mkdir()
            for entry in self.previous:
                entry.rename(retired / entry.name)
            self._retired = retired
            self.previous = []
        self._started = True

    def commit(self) -> None:
        """Deletes the replaced run, once the new one has a checkpoint to resume from."""
        if self._retired is not None:
            shutil.rmtree(self._retired, ignore_errors=True)
            self._retired = None

    def release(self) -> None:
        """Releases the lock of a run that finished; a replaced run is deleted."""
        self.commit()
        self._unlock()

    def abandon(self) -> str:
        """Releases the lock of a run that failed; returns a sentence on what was kept.

        Before training nothing is changed: what this process created is removed and an
        existing directory is left as it was. After training started, a replaced run
        that the new one did not get past its first checkpoint is put back; otherwise
        the new run's checkpoints and logs are kept.
        """
        if self._lock_handle is None:
            return ""
        if self.scratch:
            note = ""
        elif not self._started:
            if self.created is not None:
                shutil.rmtree(self.created, ignore_errors=True)
                note = "Nothing was written."
            else:
                note = f"{self.path} was left as it was."
        elif self._retired is not None:
            _restore(self.path, self._retired)
            self._retired = None
            note = f"The previous run in {self.path} was kept as it was."
        elif (self.path / CHECKPOINT_DIR / CHECKPOINT_INDEX).is_file():
            note = (
                f"The run's checkpoints in {self.path} are kept: run the same command with "
                "--resume to continue."
            )
        else:
            note = (
                f"No checkpoint had been written; {self.path} holds the run's logs only. Run "
                "the same command with --overwrite to start again."
            )
        self._unlock()
        return note

    def _unlock(self) -> None:
        if self._lock_handle is None:
            return
        if self.scratch:
            shutil.rmtree(self.path, ignore_errors=True)
        else:
            (self.path / LOCK_NAME).unlink(missing_ok=True)
        self._lock_handle.close()
        self._lock_handle = None


def claim(path: Path, resume: bool = False, overwrite: bool = False) -> RunDirectory:
    """Creates or opens the run directory and takes its lock.

    Leftovers of an earlier process that was killed in this directory are dealt with
    first: staging folders and files are removed, and a run that an `overwrite` was
    replacing when it died is put back.

    Raises:
        ConfigError: The directory cannot be created, holds files and neither `resume`
            nor `overwrite` was given, `resume` was given for a run that is missing or
            finished, or another process holds the lock.
    """
    if resume and overwrite:
        raise ConfigError("--resume and --overwrite contradict each other. Choose one.")
    created = _outermost_missing(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        handle = _lock(path)
    except OSError as error:
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)
        raise ConfigError(
            f"Cannot create run directory {path}: {short_reason(error)}. Choose another "
            "--output-dir or --run-name."
        ) from None
    try:
        _recover(path)
        contents = [p for p in path.iterdir() if p.name != LOCK_NAME]
        if resume:
            _require_checkpoints(path, existed=created is None)
        elif contents and not overwrite:
            raise ConfigError(
                f"Run directory {path} already exists and is not empty. Pass --resume to "
                "continue its run, --overwrite to replace it, or choose another --run-name."
            )
    except BaseException:
        (path / LOCK_NAME).unlink(missing_ok=True)
        handle.close()
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)
        raise
    return RunDirectory(path, created, resume, handle, previous=contents if overwrite else [])


def _recover(path: Path) -> None:
    """Cleans up after a process that was killed while it held this directory.

    Staging entries (`.tmp-*`, `.old-*`) are half-written artefacts: removed. A
    `.replaced-*` folder holds a run that `--overwrite` was replacing: deleted when
    the new run had reached its first checkpoint, else put back.
    """
    for folder in (path, path / CHECKPOINT_DIR):
        for entry in folder.glob(".tmp-*") if folder.is_dir() else []:
            _remove(entry)
        for entry in folder.glob(".old-*") if folder.is_dir() else []:
            _remove(entry)
    for retired in path.glob(RETIRED_PREFIX + "*"):
        if (path / CHECKPOINT_DIR / CHECKPOINT_INDEX).is_file():
            shutil.rmtree(retired, ignore_errors=True)
        else:
            logger.warning(
                "Putting back the run in %s that an interrupted --overwrite replaced.", path
            )
            _restore(path, retired)


def _restore(path: Path, retired: Path) -> None:
    """Replaces the run directory's contents with the retired run's."""
    for entry in path.iterdir():
        if entry.name != LOCK_NAME and entry != retired:
            _remove(entry)
    for entry in retired.iterdir():
        entry.rename(path / entry.name)
    retired.rmdir()


def _remove(entry: Path) -> None:
    if entry.is_dir() and not entry.is_symlink():
        shutil.rmtree(entry, ignore_errors=True)
    else:
        entry.unlink(missing_ok=True)


def scratch(path: Path, resume: bool = False) -> RunDirectory:
    """Returns a temporary run directory for a worker that is not the chief.

    Args:
        path: The chief's run directory, read when resuming.
        resume: Continue from the chief's last checkpoint.

    Raises:
        ConfigError: `resume` was given and the chief's run has no checkpoint.
    """
    if resume:
        _require_checkpoints(path)
    _remove_stale_scratch()
    temporary = Path(tempfile.mkdtemp(prefix=SCRATCH_PREFIX))
    handle = _lock(temporary)
    return RunDirectory(temporary, None, resume, handle, source=path, scratch=True)


def _remove_stale_scratch() -> None:
    """Removes the scratch directories of workers that were killed before removing them.

    A live worker holds its scratch directory's lock; the kernel released a killed one's.
    """
    for stale in Path(tempfile.gettempdir()).glob(SCRATCH_PREFIX + "*"):
        if not (stale / LOCK_NAME).is_file():
            continue  # being created
        try:
            handle = _lock(stale)
        except (ConfigError, OSError):
            continue  # a live worker's
        handle.close()
        shutil.rmtree(stale, ignore_errors=True)


def _require_checkpoints(path: Path, existed: bool = True) -> None:
    if (path / CHECKPOINT_DIR / CHECKPOINT_INDEX).is_file():
        return
    if not existed or not path.is_dir():
        state = "does not exist: there is no run to resume. Leave out --resume to start it."
    elif any((p / "saved_model.pb").is_file() for p in path.iterdir() if p.name.isdigit()):
        state = (
            "holds a finished run: there is nothing to resume. Choose another --run-name for "
            "a new run, or pass --overwrite instead of --resume to replace it."
        )
    else:
        state = (
            "has no checkpoint to resume from (the run stopped before its first one). Pass "
            "--overwrite instead of --resume to start it again."
        )
    raise ConfigError(f"Run directory {path} {state}")


def _outermost_missing(path: Path) -> Path | None:
    missing = None
    for candidate in [path, *path.parents]:
        if candidate.exists():
            break
        missing = candidate
    return missing


def _lock(path: Path):
    """Takes the directory's lock, or raises naming the process that holds it."""
    handle = open(path / LOCK_NAME, "a+", encoding="ascii")  # noqa: SIM115
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        owner = handle.read().strip() or "unknown"
        handle.close()
        raise ConfigError(
            f"Run directory {path} is in use by another tf-finetune process (PID {owner}). "
            "Wait for it to finish, or choose another --run-name."
        ) from None
    try:
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
    except OSError:
        (path / LOCK_NAME).unlink(missing_ok=True)  # ours: we hold its lock
        handle.close()
        raise
    return handle
