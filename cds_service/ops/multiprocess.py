"""The folder where gunicorn's workers keep their metric values (prometheus_client multiprocess mode).

Each worker is a process with its own memory, so a counter kept in memory would answer a scrape
with the one worker's share. In multiprocess mode every process writes its values to files in
$PROMETHEUS_MULTIPROC_DIR and a scrape adds up all of them. `serve` makes a fresh folder before
prometheus_client is imported (it picks its mode at import), tells the master's gunicorn hooks to
drop a dead worker's live files, and removes the folder when the master exits.

This module must not import prometheus_client itself."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

METRICS_DIR_ENV_VAR = "PROMETHEUS_MULTIPROC_DIR"


def start_multiprocess_metrics() -> str:
    """A new, empty folder for this server's metric files, set in the environment the workers
    inherit. Values of an earlier run must not be added to this one's, so an inherited
    $PROMETHEUS_MULTIPROC_DIR is replaced, not reused."""
    path = tempfile.mkdtemp(prefix="denosumab-cds-metrics-")
    os.environ[METRICS_DIR_ENV_VAR] = path
    master_pid = os.getpid()

    def remove_if_master() -> None:
        if os.getpid() == master_pid:  # a forked worker inherits this handler; only the master cleans up
            shutil.rmtree(path, ignore_errors=True)

    atexit.register(remove_if_master)  # also when gunicorn stops before its on_exit hook (e.g. bind failed)
    return path


def gunicorn_metrics_hooks(path: str) -> dict:
    """gunicorn server hooks (settings) that keep the folder right over the server's life."""

    def child_exit(_server, worker) -> None:
        from prometheus_client import multiprocess

        # Counters and histograms of the dead worker stay (they are totals); its live gauges go.
        multiprocess.mark_process_dead(worker.pid, path)

    def on_exit(_server) -> None:
        shutil.rmtree(path, ignore_errors=True)

    return {"child_exit": child_exit, "on_exit": on_exit}
