"""Claiming a run directory: never reusing one by accident, never sharing one.

A run directory that exists and is not empty is used only with `resume=True`
(continue the run from its last checkpoint) or `overwrite=True` (delete it and start
again). A lock file (`.lock`, holding the owner's PID) keeps a second `fit` out while
the first runs; the lock is an `fcntl` lock, so the kernel releases it when its owner
dies, even by SIGKILL, and a stale lock file is simply taken over.

In a multi-worker run only the chief claims the run directory. Every other worker
runs the same steps (saving involves all of them) into a `scratch` directory of its
own, removed when it finishes (or by the next worker on the machine, when it was
killed), and reads the chief's checkpoints when resuming.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from pathlib import Path

from tf_finetune.errors import ConfigError

LOCK_NAME = ".lock"
CHECKPOINT_DIR = "checkpoints"
SCRATCH_PREFIX = "tf-finetune-worker-"


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
        training_started: Set by the caller once training starts; from then on a
            failure keeps the directory (its checkpoints and logs).
    """

    def __init__(
        self,
        path: Path,
        created: Path | None,
        resuming: bool,
        lock_handle,
        source: Path | None = None,
        scratch: bool = False,
    ):
        self.path = path
        self.created = created
        self.resuming = resuming
        self.source = source or path
        self.scratch = scratch
        self.training_started = False
        self._lock_handle = lock_handle

    def release(self, discard: bool = False) -> None:
        """Releases the lock; with `discard`, removes what this process created.

        Discarding is for runs that stopped before training started (bad data, a
        missing model): the output folder is left as it was found.
        """
        if self._lock_handle is None:
            return
        if self.scratch:
            shutil.rmtree(self.path, ignore_errors=True)
        else:
            (self.path / LOCK_NAME).unlink(missing_ok=True)
        self._lock_handle.close()
        self._lock_handle = None
        if discard and self.created is not None:
            shutil.rmtree(self.created, ignore_errors=True)


def claim(path: Path, resume: bool = False, overwrite: bool = False) -> RunDirectory:
    """Creates or opens the run directory and takes its lock.

    Raises:
        ConfigError: The directory holds files and neither `resume` nor `overwrite`
            was given, `resume` was given for a run that is missing or finished, or
            another process holds the lock.
    """
    if resume and overwrite:
        raise ConfigError("--resume and --overwrite contradict each other. Choose one.")
    created = _outermost_missing(path)
    path.mkdir(parents=True, exist_ok=True)
    handle = _lock(path)
    try:
        contents = [p for p in path.iterdir() if p.name != LOCK_NAME]
        if overwrite:
            for entry in contents:
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
            contents = []
        if resume:
            _require_checkpoints(path)
        elif contents:
            raise ConfigError(
                f"Run directory {path} already exists and is not empty. Pass --resume to "
                "continue its run, --overwrite to replace it, or choose another --run-name."
            )
    except BaseException:
        handle.close()
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)
        raise
    return RunDirectory(path, created, resume, handle)


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


def _require_checkpoints(path: Path) -> None:
    if not (path / CHECKPOINT_DIR).is_dir():
        finished = (path / "fit_config.yaml").is_file()
        raise ConfigError(
            f"Run directory {path} "
            + (
                "holds a finished run. Choose another --run-name for a new one."
                if finished
                else "has no checkpoint to resume from. Use --overwrite to start it again."
            )
        )


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
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle
