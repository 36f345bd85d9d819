"""The metrics folder of `serve`: a server killed without cleaning up (SIGKILL) leaves its folder,
and the next start removes it, never the folder of a server still running."""

from __future__ import annotations

import os
import subprocess
import sys

from cds_service.ops.multiprocess import remove_stale_metrics_folders


def test_folders_of_servers_that_are_gone_are_removed_and_running_ones_kept(tmp_path):
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(gone.stdout)
    stale = tmp_path / f"denosumab-cds-metrics-{dead_pid}-k3x9"
    stale.mkdir()
    (stale / "counter_123.db").write_bytes(b"\0" * 64)
    running = tmp_path / f"denosumab-cds-metrics-{os.getpid()}-a1b2"
    running.mkdir()
    unrelated = tmp_path / "denosumab-cds-metrics-bench-x1"  # not a server's folder (no pid)
    unrelated.mkdir()
    assert remove_stale_metrics_folders(tmp_path) == [stale]
    assert not stale.exists() and running.is_dir() and unrelated.is_dir()
