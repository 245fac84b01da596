"""The Celery app of the drain benchmark (and RQ's importable no-op).

Run as a module it is the Celery worker: `--pool=solo`, it counts the tasks it has
run and, at BENCH_JOBS, prints the seconds since it became ready and exits.
"""

from __future__ import annotations

import os
import sys
import time

from celery import Celery
from celery.signals import worker_ready

app = Celery("bench", broker=os.environ.get("BENCH_CELERY_URL", "redis://127.0.0.1:6379/0"))
app.conf.update(
    task_ignore_result=True, worker_hijack_root_logger=False, worker_redirect_stdouts=False
)
_state = {"count": 0, "target": int(os.environ.get("BENCH_JOBS", "0")), "started": 0.0}


@worker_ready.connect
def _ready(**_: object) -> None:
    _state["started"] = time.perf_counter()


@app.task(name="noop")
def noop() -> None:
    _state["count"] += 1
    if _state["count"] == _state["target"]:
        print(f"BENCH_DRAIN {time.perf_counter() - _state['started']}", flush=True)
        os._exit(0)  # the measurement is done; skip Celery's shutdown


def rq_noop() -> None:
    """RQ enqueues functions by import path."""


if __name__ == "__main__":
    options = ["--pool=solo", "--loglevel=WARNING", "-Q", "bench", "--without-gossip"]
    sys.exit(app.worker_main(["worker", *options, "--without-mingle", "--without-heartbeat"]))
