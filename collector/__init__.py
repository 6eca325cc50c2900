"""The provincial collector: receives the gateways' reports, stores them (PostgreSQL; SQLite
for a laptop trial), and shows them to Diskominfo — a dashboard and a pull API.

``create_app`` (collector.app) is the Flask factory; ``hotspot collector run`` serves it with
gunicorn. See docs/sync-and-collector.md.
"""

from __future__ import annotations

from typing import Any


def create_app(config: Any = None, **kwargs: Any):
    from collector.app import create_app as _create_app

    return _create_app(config, **kwargs)
