"""``hotspot collector run``: the collector under gunicorn.

Threaded workers (``gthread``): a gateway on a slow satellite link may take many seconds to
upload one batch and must not hold a whole worker. The app is loaded once in the master
(``preload_app``), so migrations run once; each worker opens its own database connections.
The master also runs the daily maintenance (partitions ahead, the retention purge:
collector.maintenance) in a thread of its own, first when the server is ready.
"""

from __future__ import annotations

from typing import Any

from gunicorn.app.base import BaseApplication

from collector.config import CollectorConfig
from hotspot.httpworker import worker_class_for


class CollectorServer(BaseApplication):
    def __init__(self, config: CollectorConfig, bind: str, log_level: str = "info"):
        self.config = config
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
            "when_ready": self._start_maintenance,
        }
        self.maintenance: Any = None
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def _start_maintenance(self, _arbiter: Any) -> None:
        from sqlalchemy import create_engine
        from sqlalchemy.pool import NullPool

        from collector.db import make_engine, normalize_url
        from collector.maintenance import DailyJob

        # Its own engine, and no connection kept open between uses: workers are forked from
        # this process (now and whenever one is replaced) and must not inherit one.
        url = normalize_url(self.config.database_url)
        engine = (
            make_engine(url) if url.startswith("sqlite") else create_engine(url, poolclass=NullPool)
        )
        self.maintenance = DailyJob(engine, self.config)
        self.maintenance.start()

    def load(self):
        from collector.app import create_app

        return create_app(self.config)


def serve(config: CollectorConfig, bind: str, log_level: str = "INFO") -> int:
    CollectorServer(config, bind, log_level).run()
    return 0
