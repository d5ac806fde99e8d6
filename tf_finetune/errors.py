"""The exception family of tf_finetune.

The library raises these and never exits; the CLI turns them into one line on stderr
and the exit code of the class. Messages say what is wrong, where, and how to fix it.
"""

import re


class TfFinetuneError(Exception):
    """Base class of every error tf_finetune raises on purpose."""

    exit_code = 1


class ConfigError(TfFinetuneError):
    """A configuration value or key is invalid."""

    exit_code = 3


class DataError(TfFinetuneError):
    """A dataset, file, column, row or label cannot be used."""

    exit_code = 4


class ModelError(TfFinetuneError):
    """A checkpoint or tokenizer cannot be found or loaded."""

    exit_code = 5


class DependencyError(TfFinetuneError):
    """The installed packages cannot run tf_finetune (Keras 3 only, transformers 5, ...)."""

    exit_code = 6


class ExportError(TfFinetuneError):
    """The SavedModel or the run artefacts cannot be written."""

    exit_code = 7


class CheckpointError(TfFinetuneError):
    """A training checkpoint cannot be written, or none can be read to resume from."""

    exit_code = 8


class TrainingDiverged(TfFinetuneError):
    """The training loss became NaN or infinite."""

    exit_code = 9


class WorkerLost(TfFinetuneError):
    """Another worker of a multi-worker run stopped answering, so training cannot go on."""

    exit_code = 10


class Stopped(TfFinetuneError):
    """SIGTERM or Ctrl-C stopped a command.

    The exit code is the shell's for the signal: 130 for SIGINT, 143 for SIGTERM.
    """

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


class TrainingInterrupted(Stopped):
    """SIGTERM or Ctrl-C stopped training after a checkpoint was saved."""


def first_line(error: BaseException) -> str:
    """Returns the first line of an exception's message, for one-line error messages."""
    lines = str(error).strip().splitlines()
    return lines[0].rstrip(".") if lines else type(error).__name__


def short_reason(error: BaseException) -> str:
    """Returns why a write or read failed, in a few words ("No space left on device").

    An `OSError` gives its `strerror`. A TensorFlow `OpError` gives its first line
    without the op's wrapper names, and after the file name that precedes a "; ".
    """
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    text = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", first_line(error))
    text = re.sub(r"\s*\[Op:[^\]]*\]$", "", text)
    return text.rsplit("; ", 1)[-1]
