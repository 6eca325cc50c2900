"""The collector's Flask application factory."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from flask import Flask, jsonify

from collector import config as config_mod
from collector.config import CollectorConfig
from collector.db import open_database
from collector.maintenance import ensure_partitions
from hotspot import wire

log = logging.getLogger(__name__)


def create_app(
    config: CollectorConfig | Mapping[str, Any] | str | None = None, *, engine: Any = None
) -> Flask:
    """``config``: a CollectorConfig, a mapping like the TOML file (``{"collector": {…}}``),
    a path, or None ($HOTSPOT_COLLECTOR_CONFIG / the default file / built-in defaults).
    The schema is migrated here; the engine's pool is emptied before returning, so a
    pre-forking server's workers each open their own connections."""
    if config is None or isinstance(config, str):
        cfg = config_mod.load(config)
    elif isinstance(config, CollectorConfig):
        cfg = config
    else:
        cfg = (
            config_mod.load(overrides=config)
            if "collector" in config
            else config_mod.load(overrides={"collector": dict(config)})
        )
    app = Flask(__name__)
    app.config["COLLECTOR"] = cfg
    # Werkzeug refuses longer bodies with 413 before a view reads them.
    app.config["MAX_CONTENT_LENGTH"] = cfg.max_body_bytes
    app.config["JSON_SORT_KEYS"] = False
    db = engine if engine is not None else open_database(cfg.database_url)
    # This month's partitions and the next ones before the first report (cheap when they are
    # there); the daily job (collector.server) keeps it so and purges.
    ensure_partitions(db)
    if engine is None:
        db.dispose()
    app.extensions["collector_db"] = db

    from collector.api import bp as api_bp
    from collector.certs import bp as certs_bp
    from collector.dashboard import bp as dashboard_bp
    from collector.ingest import bp as ingest_bp
    from collector.metrics import bp as metrics_bp
    from collector.policy import bp as policy_bp

    app.register_blueprint(ingest_bp)
    app.register_blueprint(api_bp)
    app.register_blueprint(dashboard_bp)
    app.register_blueprint(metrics_bp)
    app.register_blueprint(policy_bp)
    app.register_blueprint(certs_bp)

    @app.get("/healthz")
    def healthz():
        return jsonify({"ok": True, "protocol": wire.PROTOCOL})

    @app.errorhandler(413)
    def too_large(_exc):
        resp = jsonify(
            {"ok": False, "error": "too-large", "message": f"body over {cfg.max_body_kb} kB"}
        )
        resp.status_code = 413
        return resp

    return app
