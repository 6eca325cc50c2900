"""``hotspot portal run``: the portal under gunicorn, as an unprivileged user.

Started as root (development, or a unit without ``User=``), it first creates the secret
files (cookie secret, voucher key) with the right owner, then drops to ``[portal] user``
for good — before gunicorn starts, so no process of the portal keeps root. Under systemd
with ``User=hotspot`` it simply runs. Then the process's start-up (:func:`portal.startup.
prepare`: keys, database, packages) runs once, before gunicorn forks its workers.

Workers: ``gthread`` workers (a few threads each: a slow phone does not hold a whole
process) with a read deadline per request (:mod:`hotspot.httpworker`: a phone that trickles
its headers is cut after ``[portal] read_timeout`` seconds), ``[portal] workers`` of them — by default as many as cores, at least 2 and at
most 4 (a Raspberry Pi has 1–4 cores and 0.5–8 GB). The application is loaded once in the
master before forking.

Two listeners need two processes (gunicorn's TLS settings apply to every listener): plain
HTTP on ``lan_address:portal_port`` (the captive redirects land there), and, with
``--tls``, HTTPS on ``lan_address:https_port`` for the configured hostname.
"""

from __future__ import annotations

import grp
import logging
import os
import pwd
from typing import Any

from hotspot.config import Config
from hotspot.errors import ConfigError, HotspotError
from hotspot.httpworker import worker_class_for
from hotspot.vouchers.keys import load_key
from portal.state import PortalState, state

log = logging.getLogger(__name__)


def worker_count(config: Config, cores: int | None = None) -> int:
    if config.portal.workers:
        return config.portal.workers
    cores = cores or os.cpu_count() or 1
    return min(4, max(2, cores))


def default_bind(config: Config, tls: bool = False) -> str:
    port = config.portal.https_port if tls else config.network.portal_port
    return f"{config.network.gateway_ip}:{port}"


def gunicorn_options(
    config: Config,
    *,
    tls: bool = False,
    bind: str | None = None,
    workers: int | None = None,
    log_level: str = "info",
) -> dict[str, Any]:
    p = config.portal
    if tls and not p.tls:
        raise ConfigError(
            "portal.tls_cert", "--tls needs portal.hostname, portal.tls_cert and portal.tls_key"
        )
    opts: dict[str, Any] = {
        "bind": [bind or default_bind(config, tls)],
        "workers": workers or worker_count(config),
        # gthread with a read deadline per request: slow clients are cut (slowloris).
        "worker_class": worker_class_for(p.read_timeout),
        "threads": p.threads,
        "preload_app": True,
        "timeout": 30,
        "graceful_timeout": 10,
        "keepalive": 5,
        "backlog": 512,
        # Small requests only: a phone has no business sending more.
        "limit_request_line": 4094,
        "limit_request_fields": 50,
        "limit_request_field_size": 4096,
        # Recycle workers now and then: a leak can never grow without bound.
        "max_requests": 20000,
        "max_requests_jitter": 2000,
        # No access log: the addresses and URLs of villagers are nobody's business.
        "accesslog": None,
        "errorlog": "-",
        "loglevel": log_level.lower(),
        "proc_name": "hotspot-portal" + ("-tls" if tls else ""),
        # Nothing in front of the portal: no header may claim HTTPS or another client.
        "secure_scheme_headers": {},
        "forwarded_allow_ips": "127.0.0.2",
        "control_socket_disable": True,
        "post_fork": _post_fork,
    }
    if tls:
        opts.update(certfile=p.tls_cert, keyfile=p.tls_key)
    return opts


def _post_fork(server: Any, _worker: Any) -> None:
    """Each worker gets its own database connections (none may cross a fork)."""
    app = getattr(getattr(server, "app", None), "callable", None)
    if app is not None:
        state(app).db.dispose(close=False)
        state(app).identities.engine.dispose(close=False)


def prepare_files(config: Config, user: pwd.struct_passwd | None) -> None:
    """Create the secret files before dropping root (the portal user cannot write /etc)."""
    p = config.portal
    group = config.control.group
    load_key(p.voucher_key_file, create=True, group=group)
    load_key(p.secret_key_file, create=True, group=group, what="portal secret")
    if user is not None:
        for path in (p.voucher_key_file, p.secret_key_file):
            gid = _gid(group, user.pw_gid)
            os.chown(path, -1, gid)
            os.chmod(path, 0o640)


def _gid(group: str, fallback: int) -> int:
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        return fallback


def drop_privileges(config: Config) -> pwd.struct_passwd | None:
    """As root with ``[portal] user`` set: become that user (and its groups, plus the control
    socket's group) for good. Otherwise: nothing."""
    name = config.portal.user
    if os.geteuid() != 0 or not name:
        return None
    try:
        user = pwd.getpwnam(name)
    except KeyError:
        raise ConfigError(
            "portal.user", f'no user {name!r} on this machine (create it, or set portal.user = "")'
        ) from None
    prepare_files(config, user)
    groups = {user.pw_gid, _gid(config.control.group, user.pw_gid)}
    os.setgroups(sorted(groups | set(os.getgrouplist(name, user.pw_gid))))
    os.setgid(user.pw_gid)
    os.setuid(user.pw_uid)
    os.environ["HOME"] = user.pw_dir
    log.info("running as %s", name)
    return user


def make_server(portal: PortalState, options: dict[str, Any]):
    from gunicorn.app.base import BaseApplication

    from portal.app import create_app

    class PortalServer(BaseApplication):
        def load_config(self) -> None:
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self):
            return create_app(state=portal)

    return PortalServer()


def run(
    config: Config,
    *,
    tls: bool = False,
    bind: str | None = None,
    workers: int | None = None,
    log_level: str = "info",
) -> int:
    options = gunicorn_options(config, tls=tls, bind=bind, workers=workers, log_level=log_level)
    if drop_privileges(config) is None:
        if os.geteuid() == 0:
            log.warning('portal runs as root: set portal.user (default "hotspot")')
        try:
            prepare_files(config, None)
        except (OSError, HotspotError) as exc:
            log.warning("secret files: %s", getattr(exc, "message", exc))
    from portal.startup import prepare

    portal = prepare(config)
    log.info(
        "portal on %s with %d workers × %d threads",
        ", ".join(options["bind"]),
        options["workers"],
        options["threads"],
    )
    make_server(portal, options).run()
    return 0
