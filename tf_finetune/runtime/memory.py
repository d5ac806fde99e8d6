"""This process's resident memory, now and at its peak."""

from __future__ import annotations

import resource


def current_rss_mib() -> float:
    """Returns the resident memory of this process in MiB (peak RSS where /proc is absent)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as handle:
            pages = int(handle.read().split()[1])
        return pages * resource.getpagesize() / 2**20
    except OSError:
        return peak_rss_mib()


def peak_rss_mib() -> float:
    """Returns the peak resident memory of this process in MiB.

    Read from `VmHWM`, the high-water mark of this program's own memory. `ru_maxrss`
    (used where /proc is absent) survives `exec`: a process started by a larger one
    reports the parent's peak as its own.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
