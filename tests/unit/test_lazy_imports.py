"""What the gateway daemon and a portal worker load at start-up, and what they must not
(issue #12, item 3): libraries a path needs only when it runs are imported there, so that a
change which pulls one in at start-up shows here. Each check is one fresh interpreter
(``python -c``), as the process starts; the figures behind the list are in bench/README.md.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hotspot.db import MIGRATIONS, open_database, script_head

REPO = Path(__file__).resolve().parents[2]

# What the gateway daemon has imported before its first tick: the command line (only the
# gateway's group), the daemon, and its database opened on an up-to-date schema.
GATEWAY_START = """
import json, sys
from hotspot_cli.main import build_parser
build_parser(["--config", "x.toml", "gateway", "run"])
import gateway.daemon
from hotspot.db import open_database
open_database(sys.argv[1], apart=True)
print(json.dumps(sorted(sys.modules)))
"""

# Loaded by the code that needs them, never at start-up.
GATEWAY_LAZY = (
    "alembic",  # migrations run only when the schema is behind
    "scapy",  # tests only: the ARP probe is gateway/arp.py (scapy stayed 29 MB after one probe)
    "flask",  # other processes' commands: the portal,
    "portal",
    "collector",  # the collector,
    "sync",  # the sync agent,
    "demo",  # the demo,
    "provisioning",  # the installer
    "pyroute2.ndb",  # pyroute2's package __init__ (gateway/netlink.py)
    "pyroute2.ipdb",
    "pyroute2.plan9",
    "unittest.case",  # the test runner pyroute2's route socket would pull in (gateway/netlink.py)
    "unittest.runner",
    "psutil",  # the health probe (sync agent, console)
    "pyrad",  # RADIUS, when [radius] is on (gateway/radius.py)
    "gateway.radius",
    "cryptography",  # policy signatures in a child; certificates only with [sync] cert_zone
    "hotspot.certs",
)
PORTAL_LAZY = (
    "alembic",
    "scapy",
    "pyroute2",
    "gateway",
    "collector",
    "sync",
    "demo",
    "provisioning",
    "segno",  # QR codes: the console's printable sheets
    "cryptography",  # policy signatures in a child; certificates only with [sync] cert_zone
    "escpos",  # the receipt printer
    "argon2",  # console passwords: the login form
    "psutil",  # the console's dashboard (hotspot/health.py)
    "pyrad",  # RADIUS logins, when [radius] is on
)


# A portal worker as gunicorn has forked it (`hotspot portal run`'s command line, the server,
# the whole app: the first line printed), then after the villagers' pages in both languages:
# Babel's locale data (CLDR, 4 MB for "id") stays unloaded — the portal writes its numbers
# and dates itself (portal/fmt.py) (the second line). One interpreter for both: each costs
# seconds.
PORTAL_WORKER = """
import json, sys, tempfile
from pathlib import Path
from hotspot_cli.main import build_parser
build_parser(["portal", "run"])
import portal.app, portal.server
print(json.dumps(sorted(sys.modules)))
from hotspot import config as config_mod
from hotspot.db import open_database
from portal import create_app
from portal.startup import prepare
tmp = Path(tempfile.mkdtemp())
cfg = config_mod.load(overrides={
    "database": {"url": f"sqlite:///{tmp}/h.db"},
    "portal": {"secret_key_file": str(tmp / "s"), "voucher_key_file": str(tmp / "v")},
    "packages": {"harian": {"title": "Harian", "price": 5000, "tier": "free", "hours": 24}},
})
open_database(cfg.database.url).dispose()
class Gateway:
    def send(self, request):
        return {"ip": "10.10.0.5", "mac": "02:00:00:00:00:05", "blocked": False,
                "session": None, "last_session": None, "allowance": {}}
app = create_app(state=prepare(cfg, gateway=Gateway()))
client = app.test_client()
for page in ("/", "/?lang=en", "/info", "/?lang=id"):
    got = client.get(page, base_url="http://10.10.0.1:8080",
                     environ_base={"REMOTE_ADDR": "10.10.0.5"})
    assert got.status_code == 200 and b"Rp 5" in got.data, (page, got.status_code)
import babel.localedata
print(json.dumps(sorted(babel.localedata._cache)))
"""


def run_python(code: str, *args: str) -> list[set[str]]:
    """Each JSON line ``code`` prints, as a set."""
    out = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return [set(json.loads(line)) for line in out.stdout.splitlines() if line.startswith("[")]


def offenders(modules: set[str], lazy: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if any(m == p or m.startswith(p + ".") for p in lazy))


@pytest.fixture
def current_db(tmp_path):
    url = f"sqlite:///{tmp_path}/hotspot.db"
    open_database(url).dispose()  # migrated once: the daemon opens an up-to-date one
    return url


@pytest.fixture(scope="module")
def portal_worker() -> list[set[str]]:
    return run_python(PORTAL_WORKER)


def test_gateway_daemon_starts_without_what_it_needs_only_later(current_db):
    (modules,) = run_python(GATEWAY_START, current_db)
    assert "gateway.engine" in modules and "pyroute2.iproute.linux" in modules
    assert offenders(modules, GATEWAY_LAZY) == []


def test_portal_worker_starts_without_what_some_pages_need_only(portal_worker):
    modules = portal_worker[0]
    assert "portal.captive" in modules and "portal.operator.dashboard" in modules
    assert offenders(modules, PORTAL_LAZY) == []


def test_the_schema_head_is_read_without_alembic_as_alembic_reads_it():
    from alembic.script import ScriptDirectory

    from hotspot.db import alembic_config

    for migrations in (MIGRATIONS, REPO / "collector" / "migrations"):
        script = ScriptDirectory.from_config(alembic_config("sqlite://", migrations))
        assert script_head(migrations) == script.get_current_head()


def test_a_schema_that_is_not_one_chain_is_left_to_alembic(tmp_path):
    versions = tmp_path / "versions"
    versions.mkdir()
    (versions / "a.py").write_text('revision = "a"\ndown_revision = None\n')
    (versions / "b.py").write_text('revision = "b"\ndown_revision = "a"\n')
    assert script_head(tmp_path) == "b"
    (versions / "c.py").write_text('revision = "c"\ndown_revision = "a"\n')  # two heads
    assert script_head(tmp_path) is None
    (versions / "c.py").write_text('revision = "c"\ndown_revision = ("a", "b")\n')  # a merge
    assert script_head(tmp_path) is None


def test_a_worker_serves_its_pages_without_babels_locale_data(portal_worker):
    assert portal_worker[1] == set()


# The gateway's start on a database that is behind (the first start after an update, or a new
# one): migrated in a child process, so that the daemon does not carry Alembic, Mako and
# Pygments (10 MB) for the months it then runs.
GATEWAY_MIGRATES = """
import json, sys
from hotspot.db import current_revision, make_engine, open_database
try:
    engine = open_database(sys.argv[1], apart=True)
except Exception as exc:
    print(json.dumps({"error": type(exc).__name__, "code": str(exc.code)}))
else:
    print(json.dumps({"revision": current_revision(engine),
                      "alembic": any(m.split(".")[0] == "alembic" for m in sys.modules)}))
"""


def run_json(code: str, *args: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_gateway_migrates_a_database_that_is_behind_in_a_child_process(tmp_path):
    url = f"sqlite:///{tmp_path}/hotspot.db"
    assert run_json(GATEWAY_MIGRATES, url) == {"revision": script_head(), "alembic": False}


def test_a_migration_that_fails_in_the_child_is_a_database_error_and_changes_nothing(tmp_path):
    """A file that is not a database (a card gone bad): the child's migration fails, the
    daemon gets a ``database`` error (exit 1, the child's traceback in the log), the file is
    untouched."""
    path = tmp_path / "hotspot.db"
    garbage = b"this is not a SQLite database " * 200
    path.write_bytes(garbage)
    got = run_json(GATEWAY_MIGRATES, f"sqlite:///{path}")
    assert got == {"error": "HotspotError", "code": "database"}
    assert path.read_bytes() == garbage


def test_the_daemon_names_the_certificate_files_as_the_agent_writes_them():
    from gateway import dnsapply
    from hotspot import certs

    assert (dnsapply.CERT_FILE, dnsapply.KEY_FILE) == (certs.CERT_FILE, certs.KEY_FILE)
