"""Turning SIGTERM and Ctrl-C during training into a clean stop after the current step.

Inside `StopSignals`, the first SIGTERM or SIGINT is only recorded; the checkpoint
callback sees it at the end of the step, saves, and stops the run. A second one acts
as it normally would (Ctrl-C twice stops at once).
"""

from __future__ import annotations

import logging
import signal
import threading

logger = logging.getLogger(__name__)

_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopSignals:
    """A context manager that records SIGTERM/SIGINT instead of dying on them.

    Attributes:
        received: The name of the signal received ("SIGTERM", "SIGINT"), or None.
        exit_code: The shell's exit code for it (128 + signal number).
    """

    def __init__(self):
        self.received: str | None = None
        self.exit_code = 1
        self._previous: dict = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for number in _SIGNALS:
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc_info):
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous = {}
        return False

    def _handle(self, number, frame):
        self.received = signal.Signals(number).name
        self.exit_code = 128 + number
        logger.warning("%s received: stopping after the current step.", self.received)
        # A second signal acts at once.
        signal.signal(number, self._previous.get(number, signal.SIG_DFL))
