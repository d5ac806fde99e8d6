"""Where a run's time goes: seconds per phase, from the start of the process."""

from __future__ import annotations

import os
import time


def process_age() -> float | None:
    """Seconds since this process started (Linux), or None where that cannot be read."""
    try:
        with open("/proc/self/stat", encoding="ascii") as handle:
            # The command name (field 2) may hold spaces; the fields after it do not.
            started = int(handle.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime", encoding="ascii") as handle:
            uptime = float(handle.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return max(uptime - started / os.sysconf("SC_CLK_TCK"), 0.0)


_started = False  # whether a run has started in this process


class PhaseClock:
    """Seconds spent in each phase of a run, in order.

    Each `lap(name)` charges the time since the previous lap to `name`. A clock made by
    `for_run` starts with `start-up` when its run is the first of the process.
    """

    def __init__(self, start_up: float | None = None):
        self.seconds: dict[str, float] = {} if start_up is None else {"start-up": start_up}
        self._mark = time.perf_counter()

    @classmethod
    def for_run(cls) -> PhaseClock:
        """The clock of a run: the first run of a process starts with `start-up`, the
        time from the process's start to the run's (imports, settings); a later run of
        the same process (the next model of a `compare`) has none."""
        global _started
        start_up = None if _started else process_age()
        _started = True
        return cls(start_up)

    def lap(self, phase: str) -> float:
        """Charges the time since the last lap to `phase`; returns it."""
        now = time.perf_counter()
        spent, self._mark = now - self._mark, now
        self.seconds[phase] = self.seconds.get(phase, 0.0) + spent
        return spent

    def split_training(self, stats: dict) -> None:
        """Charges the time since the last lap to training, as compile, train and validation.

        Args:
            stats: The training figures (`throughput.summarize`): `train_seconds` (all
                steps) and `tracing_seconds` (the first step's extra). The rest of the
                lap is validation, checkpoints and summaries.
        """
        spent = self.lap("train")
        steps = min(stats.get("train_seconds") or 0.0, spent)
        tracing = min(stats.get("tracing_seconds") or 0.0, steps)
        self.seconds["compile"] = tracing
        self.seconds["train"] = steps - tracing
        self.seconds["validation"] = spent - steps


def describe(seconds: dict[str, float]) -> str:
    """One line: each phase's seconds, then the total."""
    parts = ", ".join(f"{phase} {value:.1f} s" for phase, value in seconds.items())
    return f"Time: {parts}; total {sum(seconds.values()):.1f} s."
