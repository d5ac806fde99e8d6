"""Writing artefacts so that a reader never sees half of one.

A file is written to a temporary name beside it and renamed over it; a directory is
built under a temporary name in the same parent and renamed when complete. A crash
(or a full disk) mid-write leaves the previous artefact as it was, and at worst a
hidden `.tmp-*` entry behind.

`fault_point` lets the tests fail a write, or kill the process, at a chosen place:
the environment variable `TF_FINETUNE_FAULT` names the place (see `fault_point`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import uuid
from pathlib import Path

FAULT_VARIABLE = "TF_FINETUNE_FAULT"


def write_text(path: Path, text: str) -> None:
    """Writes `text` to `path` through a temporary file and a rename."""
    with replaced_file(path) as handle:
        handle.write(text)


@contextlib.contextmanager
def replaced_file(path: Path):
    """Yields a text handle whose contents replace `path` when the block succeeds.

    The text goes to a temporary file beside `path`, renamed over it at the end; on
    error (or SIGTERM turned into an exception) the temporary file is removed and an
    existing `path` is untouched.
    """
    path = Path(path)
    temporary = path.with_name(f".tmp-{path.name}-{uuid.uuid4().hex[:8]}")
    try:
        with temporary.open("w", encoding="utf-8", newline="") as handle:
            yield handle
            fault_point(f"write:{path.name}")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


@contextlib.contextmanager
def staged_directory(final: Path):
    """Yields a temporary directory beside `final`, renamed to `final` when the block succeeds.

    A reader never sees a partial `final`. On error (or SIGTERM turned into an
    exception) the temporary directory is removed. Missing parent folders are made.

    Raises:
        FileExistsError: `final` exists; it is left as it is.
    """
    final = Path(final)
    _refuse_existing(final)
    staging = final.with_name(f".tmp-{final.name}-{uuid.uuid4().hex[:8]}")
    staging.mkdir(parents=True)
    try:
        yield staging
        fault_point(f"rename:{final.name}")
        # Renaming a directory onto an empty one replaces it: look once more.
        _refuse_existing(final)
        staging.rename(final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _refuse_existing(path: Path) -> None:
    if path.exists():
        raise FileExistsError(errno.EEXIST, "exists already", str(path))


@contextlib.contextmanager
def staged_files(directory: Path):
    """Yields a temporary folder whose files are renamed into `directory` on success.

    Each file replaces its namesake atomically; on error none is moved and the
    temporary folder is removed.
    """
    directory = Path(directory)
    staging = directory / f".tmp-files-{uuid.uuid4().hex[:8]}"
    staging.mkdir(parents=True)
    try:
        yield staging
        fault_point("rename:files")
        for entry in sorted(staging.iterdir()):
            os.replace(entry, directory / entry.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def fault_point(place: str) -> None:
    """Fails here when `TF_FINETUNE_FAULT` names this place (tests only).

    The variable holds `<place>` to raise a "No space left on device" `OSError`, or
    `<place>=kill` / `<place>=term` to send this process SIGKILL / SIGTERM. Places are
    `write:<file name>`, `rename:<directory name>`, `rename:files`, `checkpoint:<step>`,
    `data` (data loaded, before training), `step:<n>`, `report` and `export`.
    """
    wanted = os.environ.get(FAULT_VARIABLE)
    if not wanted:
        return
    name, _, action = wanted.partition("=")
    if name != place:
        return
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif action == "term":
        os.kill(os.getpid(), signal.SIGTERM)
    else:
        raise OSError(errno.ENOSPC, f"No space left on device (injected at {place})")
