"""The folder where gunicorn's workers keep their metric values (prometheus_client multiprocess mode).

Each worker is a process with its own memory, so a counter kept in memory would answer a scrape
with the one worker's share. In multiprocess mode every process writes its values to files in
$PROMETHEUS_MULTIPROC_DIR and a scrape adds up all of them. `serve` makes a fresh folder before
prometheus_client is imported (it picks its mode at import), and removes it when the master exits.

A worker's files outlive it (its counts are part of the totals), so with `max_requests` recycling
workers a scrape would read more files every day. When a worker exits, the master folds its
counter and histogram files into one archive file per kind and deletes them, under an exclusive
lock that scrapes take shared: a scrape never sees the counts twice, nor a file vanish mid-read.

This module must not import prometheus_client itself."""

from __future__ import annotations

import atexit
import fcntl
import logging
import os
import shutil
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

logger = logging.getLogger(__name__)
METRICS_DIR_ENV_VAR = "PROMETHEUS_MULTIPROC_DIR"
_FOLDER_PREFIX = "denosumab-cds-metrics-"  # + the master's pid + "-" + a random part
_LOCK_FILE = "folding.lock"  # not *.db: the collector reads only those
_FOLDED_KINDS = ("counter", "histogram")  # additive: a dead worker's values can be summed away


def start_multiprocess_metrics() -> str:
    """A new, empty folder for this server's metric files, set in the environment the workers
    inherit. Values of an earlier run must not be added to this one's, so an inherited
    $PROMETHEUS_MULTIPROC_DIR is replaced, not reused."""
    if "prometheus_client.values" in sys.modules:  # too late: it has chosen in-process values already
        logger.warning("prometheus_client was imported before the metrics folder was set; /metrics shows one worker")
    master_pid = os.getpid()
    remove_stale_metrics_folders(Path(tempfile.gettempdir()))
    path = tempfile.mkdtemp(prefix=f"{_FOLDER_PREFIX}{master_pid}-")
    os.environ[METRICS_DIR_ENV_VAR] = path

    def remove_if_master() -> None:
        if os.getpid() == master_pid:  # a forked worker inherits this handler; only the master cleans up
            shutil.rmtree(path, ignore_errors=True)

    atexit.register(remove_if_master)  # also when gunicorn stops before its on_exit hook (e.g. bind failed)
    return path


def remove_stale_metrics_folders(parent: Path) -> list[Path]:
    """Remove the folders of servers that are gone without cleaning up (killed with SIGKILL, by
    the OOM killer or a container runtime): each folder is named after its master's pid, and a
    folder whose master no longer runs is left over. Returns what was removed."""
    removed = []
    for folder in parent.glob(f"{_FOLDER_PREFIX}*-*"):
        pid = folder.name.removeprefix(_FOLDER_PREFIX).split("-", 1)[0]
        if not pid.isdigit() or not folder.is_dir() or _is_running(int(pid)):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


def _is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: running, and not ours to judge
        return True
    return True


@contextmanager
def folder_lock(path: str, *, exclusive: bool):
    """Shared for a scrape, exclusive for folding a dead worker's files into the archive."""
    with open(os.path.join(path, _LOCK_FILE), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def fold_dead_worker(path: str, pid: int) -> None:
    """Add a dead worker's counters and histograms to the archive files and delete its own."""
    from prometheus_client import multiprocess
    from prometheus_client.mmap_dict import MmapedDict

    with folder_lock(path, exclusive=True):
        multiprocess.mark_process_dead(pid, path)  # its live gauges, should there ever be any
        for kind in _FOLDED_KINDS:
            dead = os.path.join(path, f"{kind}_{pid}.db")
            if not os.path.exists(dead):
                continue
            archive = MmapedDict(os.path.join(path, f"{kind}_archive.db"))
            try:
                for key, value, _timestamp, _position in MmapedDict.read_all_values_from_file(dead):
                    total, _ = archive.read_value(key)
                    archive.write_value(key, total + value, 0.0)
            finally:
                archive.close()
            os.remove(dead)


def gunicorn_metrics_hooks(path: str) -> dict:
    """gunicorn server hooks (settings) that keep the folder right over the server's life."""

    def child_exit(_server, worker) -> None:
        try:
            fold_dead_worker(path, worker.pid)
        except Exception as error:  # the master must go on serving: its files just stay unfolded
            logger.warning("metrics of an exited worker not folded", extra={"fields": {"problem": type(error).__name__}})

    def on_exit(_server) -> None:
        shutil.rmtree(path, ignore_errors=True)

    return {"child_exit": child_exit, "on_exit": on_exit}
