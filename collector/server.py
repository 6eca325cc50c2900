"""``hotspot collector run``: the collector under gunicorn.

Threaded workers (``gthread``): a gateway on a slow satellite link may take many seconds to
upload one batch and must not hold a whole worker. The app is loaded once in the master
(``preload_app``), so migrations run once; each worker opens its own database connections.
Each worker runs the daily maintenance (partitions ahead, the retention purge:
collector.maintenance; workers and other collectors take turns) and the alerts' evaluation
in threads of its own, started after it was forked: the master runs no thread, since a lock
a thread of the master held at a fork would stay held in that worker for good (a worker
that accepts connections and never answers).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from gunicorn.app.base import BaseApplication

from collector.config import CollectorConfig
from hotspot.httpworker import worker_class_for

# collector.metrics's name for it, not imported from there: that would import
# prometheus_client before the variable is set.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
METRICS_DIR_PREFIX = "hotspot-collector-metrics-"


class CollectorServer(BaseApplication):
    def __init__(self, config: CollectorConfig, bind: str, log_level: str = "info"):
        self.config = config
        self.metrics_dir = _metrics_dir() if config.metrics else None
        self.options: dict[str, Any] = {
            "bind": [bind],
            "workers": config.workers,
            "threads": config.threads,
            # gthread with a read deadline: a slow client (slowloris) is cut after
            # read_timeout seconds of headers or of a stalled upload.
            "worker_class": worker_class_for(config.read_timeout),
            "preload_app": True,
            "timeout": 120,
            "graceful_timeout": 10,
            "keepalive": 5,
            "loglevel": log_level.lower(),
            "errorlog": "-",
            "proc_name": "hotspot-collector",
            "post_worker_init": self.start_worker_jobs,
            "child_exit": _child_exit,
            "on_exit": self._on_exit,
        }
        self.maintenance: Any = None
        super().__init__()

    def _on_exit(self, _arbiter: Any) -> None:
        if self.metrics_dir is not None:
            shutil.rmtree(self.metrics_dir, ignore_errors=True)

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self):
        from collector.app import create_app

        self.flask_app = create_app(self.config)
        return self.flask_app

    def start_worker_jobs(self, worker: Any) -> None:
        """Each worker runs the daily maintenance and evaluates alerts on threads of its own
        (collector.maintenance.DailyJob, collector.alerts.start_loop); the app was loaded in
        the master (preload_app) before the worker was forked."""
        from collector.maintenance import DailyJob

        self.maintenance = DailyJob(self.flask_app.extensions["collector_db"], self.config)
        self.maintenance.start()
        if self.config.alerts.evaluate_in_server:
            from collector.alerts import start_loop

            start_loop(self.flask_app.extensions["collector_db"], self.config)
        if self.config.acme.enabled:  # certificates for the gateways (collector/certs.py)
            from collector.certs import AcmeJob

            AcmeJob(self.flask_app.extensions["collector_db"], self.config.acme).start()


def _metrics_dir() -> str | None:
    """The workers' counters in prometheus_client's multiprocess mode (collector/metrics.py):
    a fresh directory of this instance, named in the environment before the app (and with it
    prometheus_client) is imported, so that every worker writes its own file there. None
    when one was given (``PROMETHEUS_MULTIPROC_DIR`` set by the unit): that directory is
    kept, its files of an earlier run removed (prometheus_client asks for it wiped)."""
    given = os.environ.get(MULTIPROC_ENV)
    if given:
        for stale in Path(given).glob("*.db"):
            stale.unlink(missing_ok=True)
        return None
    _remove_dead_instances_dirs(Path(tempfile.gettempdir()))
    path = tempfile.mkdtemp(prefix=f"{METRICS_DIR_PREFIX}{os.getpid()}-")
    os.environ[MULTIPROC_ENV] = path
    return path


def _remove_dead_instances_dirs(parent: Path) -> None:
    """The directories of instances that were killed (SIGKILL, a power cut on a /tmp that
    is not tmpfs) never reached ``on_exit``: their master's pid, in the name, is gone.
    (Under the unit, ``PrivateTmp=`` empties /tmp at every stop anyway.)"""
    for old in parent.glob(f"{METRICS_DIR_PREFIX}*-*"):
        pid = old.name.removeprefix(METRICS_DIR_PREFIX).split("-", 1)[0]
        if not pid.isdigit() or old.is_symlink() or not old.is_dir():  # (never followed)
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(old, ignore_errors=True)
        except PermissionError:  # alive, another user's
            continue


def _child_exit(_server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    if os.environ.get(MULTIPROC_ENV):
        multiprocess.mark_process_dead(worker.pid)


def serve(config: CollectorConfig, bind: str, log_level: str = "INFO") -> int:
    CollectorServer(config, bind, log_level).run()
    return 0
