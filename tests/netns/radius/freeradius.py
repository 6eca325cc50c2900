"""A real FreeRADIUS (Debian's ``freeradius``) for the tests, from a configuration rendered
here: PAP against a ``users`` file, accounting into SQLite through rlm_sql (the schema is
FreeRADIUS's own ``radacct``), and a client entry for the gateway. Started with ``-f``
(foreground) in a namespace of the testbed."""

from __future__ import annotations

import re
import shutil
import sqlite3
import subprocess
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA = Path("/etc/freeradius/3.0/mods-config/sql/main/sqlite/schema.sql")
QUERIES = SCHEMA.with_name("queries.conf")
BINARY = "freeradius"


def available() -> str | None:
    """Why FreeRADIUS cannot run here (None: it can)."""
    if shutil.which(BINARY) is None:
        return "freeradius is not installed (apt-get install freeradius; .ci/run does)"
    if not SCHEMA.exists():
        return f"{SCHEMA} is missing (Debian's freeradius-config)"
    return None


@dataclass
class User:
    name: str
    password: str
    reply: dict[str, Any]


def _users(users: list[User]) -> str:
    out = []
    for u in users:
        out.append(f'{u.name}\tCleartext-Password := "{u.password}"')
        items = []
        for attr, value in u.reply.items():
            values = value if isinstance(value, list) else [value]
            for v in values:
                quoted = isinstance(v, str) and not v.startswith("0x")
                items.append(f'\t{attr} += "{v}"' if quoted else f"\t{attr} += {v}")
        out.append(",\n".join(items) if items else "")
        out.append("")
    return "\n".join(out) + "\n"


def render(
    conf: Path,
    *,
    listen: str,
    clients: dict[str, str],
    users: list[User],
    auth_port: int = 1812,
    acct_port: int = 1813,
) -> Path:
    """Write a complete FreeRADIUS configuration into ``conf``; returns the SQLite file."""
    conf.mkdir(parents=True, exist_ok=True)
    (conf / "run").mkdir(exist_ok=True)
    (conf / "log").mkdir(exist_ok=True)
    db = conf / "radacct.sqlite"
    if not db.exists():
        with sqlite3.connect(db) as c:
            c.executescript(SCHEMA.read_text())
    (conf / "dictionary").write_text("")
    # The stock queries with their "class" subsection switched on: radacct keeps the Class
    # the gateway echoes (FreeRADIUS 3.0.22+ has the column; the default leaves it out).
    queries = QUERIES.read_text()
    for item, value in (
        ("column_name", '", class"'),
        ("packet_xlat", "\", '%{Class}'\""),
        ("reply_xlat", "\", '%{reply:Class}'\""),
    ):
        queries = re.sub(rf"(\t{item} =)\t# .*", lambda m, v=value: f"{m.group(1)} {v}", queries)
    (conf / "queries.conf").write_text(queries)
    (conf / "users").write_text(_users(users))
    client_blocks = "\n".join(
        textwrap.dedent(
            f"""
            client c{i} {{
                ipaddr = {addr}
                secret = {secret}
                require_message_authenticator = yes
                nas_type = other
            }}"""
        )
        for i, (addr, secret) in enumerate(clients.items())
    )
    (conf / "radiusd.conf").write_text(
        textwrap.dedent(
            f"""\
            prefix = /usr
            exec_prefix = /usr
            sysconfdir = /etc
            localstatedir = /var
            sbindir = /usr/sbin
            confdir = {conf}
            raddbdir = {conf}
            logdir = {conf}/log
            run_dir = {conf}/run
            db_dir = {conf}
            libdir = /usr/lib/freeradius
            pidfile = {conf}/run/radiusd.pid
            name = freeradius
            max_request_time = 10
            cleanup_delay = 2
            max_requests = 1024
            hostname_lookups = no
            log {{
                destination = stdout
                auth = yes
                auth_badpass = no
                auth_goodpass = no
            }}
            security {{
                allow_core_dumps = no
                max_attributes = 200
                reject_delay = 0
                status_server = yes
            }}
            thread pool {{
                start_servers = 2
                max_servers = 4
                min_spare_servers = 1
                max_spare_servers = 3
                max_requests_per_server = 0
            }}
            {client_blocks}
            modules {{
                pap {{
                }}
                expr {{
                }}
                files {{
                    filename = {conf}/users
                }}
                sql {{
                    driver = "rlm_sql_sqlite"
                    dialect = "sqlite"
                    sqlite {{
                        filename = "{db}"
                        busy_timeout = 2000
                    }}
                    radius_db = "radius"
                    acct_table1 = "radacct"
                    acct_table2 = "radacct"
                    postauth_table = "radpostauth"
                    authcheck_table = "radcheck"
                    groupcheck_table = "radgroupcheck"
                    authreply_table = "radreply"
                    groupreply_table = "radgroupreply"
                    usergroup_table = "radusergroup"
                    client_table = "nas"
                    read_groups = no
                    read_clients = no
                    delete_stale_sessions = no
                    pool {{
                        start = 1
                        min = 1
                        max = 2
                        spare = 1
                        uses = 0
                        lifetime = 0
                        idle_timeout = 60
                    }}
                    group_attribute = "SQL-Group"
                    $INCLUDE {conf}/queries.conf
                }}
            }}
            server default {{
                listen {{
                    type = auth
                    ipaddr = {listen}
                    port = {auth_port}
                }}
                listen {{
                    type = acct
                    ipaddr = {listen}
                    port = {acct_port}
                }}
                authorize {{
                    files
                    pap
                }}
                authenticate {{
                    Auth-Type PAP {{
                        pap
                    }}
                }}
                preacct {{
                    # What rlm_sql keys radacct rows on (the stock acct_unique policy, short).
                    update request {{
                        Acct-Unique-Session-Id := "%{{Acct-Session-Id}}"
                    }}
                }}
                accounting {{
                    sql
                }}
                post-auth {{
                    # FreeRADIUS before 3.2.5 signs replies only when told to (BlastRADIUS):
                    # the gateway requires a Message-Authenticator in every Access-Accept.
                    update reply {{
                        Message-Authenticator := 0x00
                    }}
                    Post-Auth-Type REJECT {{
                        update reply {{
                            Message-Authenticator := 0x00
                        }}
                    }}
                }}
            }}
            """
        )
    )
    return db


def check(conf: Path) -> None:
    """``freeradius -C``: the configuration parses (raises with FreeRADIUS's words if not)."""
    done = subprocess.run(
        [BINARY, "-C", "-d", str(conf)], capture_output=True, text=True, timeout=30
    )
    if done.returncode != 0:
        raise RuntimeError(f"freeradius -C failed:\n{done.stdout}\n{done.stderr}")


def accounting_rows(db: Path) -> list[dict[str, Any]]:
    """FreeRADIUS's ``radacct`` rows, oldest first."""
    with sqlite3.connect(db, timeout=5) as c:
        c.row_factory = sqlite3.Row
        return [dict(r) for r in c.execute("SELECT * FROM radacct ORDER BY radacctid")]


def wait_for(predicate: Any, timeout: float, what: str, step: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
