"""Tests of the memory figures a run reports."""

import subprocess
import sys

from tf_finetune.runtime.memory import current_rss_mib, peak_rss_mib

CHILD = (
    "import resource; from tf_finetune.runtime.memory import peak_rss_mib; "
    "print(peak_rss_mib(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)"
)
PARENT = (
    "import subprocess, sys; held = bytearray(768 * 2**20); "  # zero-filled, so touched
    f"print(subprocess.run([sys.executable, '-c', {CHILD!r}], capture_output=True, "
    "text=True, check=True).stdout)"
)


def test_peak_memory_is_the_process_own_not_its_parents():
    out = subprocess.run(
        [sys.executable, "-c", PARENT], capture_output=True, text=True, check=True
    ).stdout
    own, inherited = map(float, out.split())
    assert inherited > 700  # ru_maxrss reports the parent's peak after exec
    assert own < 200
    assert peak_rss_mib() >= current_rss_mib() > 10
