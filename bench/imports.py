"""What each import costs the gateway daemon and a portal worker: ``python3 -m bench.imports``.

For each process, one fresh interpreter (``python -X importtime``, compiled ``.pyc`` files as
an installed package has them) imports, step by step, what the process imports before it
serves — the command line of its ``hotspot`` command, then the process's own modules —
and prints its RSS after every step; ``-X importtime`` gives each step's time. ``--tree DIR``
measures another checkout too (the commit before, as a baseline), side by side. No root.

Writes ``bench/results/imports.json`` and prints the Markdown table of bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"

# The command line as `hotspot …` builds it (before this change: every group's module).
PARSER = (
    "from hotspot_cli.main import build_parser; import inspect; "
    "build_parser(*([{argv!r}] if inspect.signature(build_parser).parameters else []))"
)

# The import statements in the body of ``Neighbours.arp_probe``, run (scapy's before the
# change, gateway/arp.py's after): the probe itself needs root and a LAN.
ARP_PROBE_IMPORTS = (
    "import ast, inspect, textwrap, gateway.neighbours as nb; "
    "fn = ast.parse(textwrap.dedent(inspect.getsource(nb.Neighbours.arp_probe))); "
    "[exec(ast.unparse(n)) for n in ast.walk(fn) if isinstance(n, (ast.Import, ast.ImportFrom))]"
)
# The daemon's own way of opening its database, on one that is not migrated yet.
MIGRATE_BEHIND = (
    "import inspect; from hotspot.db import open_database; "
    "open_database(DB.replace('.db', '-behind.db'), "
    "**({'apart': True} if 'apart' in inspect.signature(open_database).parameters else {}))"
)

# The daemon's check of the kept policy at start-up (gateway/policy.py), on an envelope that
# main() signs for the step: (envelope, public key, gateway id) in DB's "-policy.json".
POLICY_CHECK = (
    "import inspect, json; from hotspot import policy as pm; "
    "e, k, g = json.load(open(DB.split(':///')[1].replace('.db', '-policy.json'))); "
    "pm.verify(e, k, g, **({'apart': True} if 'apart' in inspect.signature(pm.verify).parameters "
    "else {}))"
)

# A worker following the last good policy file (portal/state.py's follow_policy) as it does
# when the file changes: the effective configuration and the announcements.
PORTAL_POLICY = (
    "import inspect, json; from hotspot import policy as pm, config as cm; "
    "p = DB.split(':///')[1].replace('.db', '-policy.json'); e, k, g = json.load(open(p)); "
    "pm.store(p + '.kept', e); "
    "c = cm.load(overrides={'sync': {'gateway_id': g}, "
    "'policy': {'public_key': k, 'state_file': p + '.kept'}}); "
    "kw = {'apart': True} if 'apart' in inspect.signature(pm.effective_from_file).parameters "
    "else {}; "
    "assert pm.effective_from_file(c, **kw)[1] == 1; pm.announcements_from_file(c, **kw)"
)

# (label, the statement that step runs). The first steps are the libraries in the order the
# process meets them, so a library's row is what it adds on its own.
STEPS: dict[str, list[tuple[str, str]]] = {
    "gateway": [
        ("sqlalchemy (+ asyncio, ssl)", "import sqlalchemy"),
        ("sqlalchemy.orm", "import sqlalchemy.orm"),
        ("hotspot.config", "import hotspot.config"),
        ("hotspot.model (the tables)", "import hotspot.model"),
        (
            "`hotspot gateway run`: the command line",
            PARSER.format(argv=["--config", "x", "gateway", "run"]),
        ),
        ("pyroute2 (what the gateway uses)", "import gateway.tc, gateway.conntrack"),
        ("gateway.engine", "import gateway.engine"),
        ("gateway.daemon (the rest)", "import gateway.daemon"),
        (
            "open the database (up to date)",
            "from hotspot.db import open_database; open_database(DB)",
        ),
        # What stays in the daemon after paths that run later (both trees run the same text):
        ("a province's policy in force (its signature checked)", POLICY_CHECK),
        ("a start on a database that is behind (an update)", MIGRATE_BEHIND),
        ("its first ARP probe (what the probe imports)", ARP_PROBE_IMPORTS),
    ],
    "portal": [
        ("sqlalchemy (+ asyncio, ssl)", "import sqlalchemy"),
        ("sqlalchemy.orm", "import sqlalchemy.orm"),
        ("hotspot.config", "import hotspot.config"),
        ("hotspot.model (the tables)", "import hotspot.model"),
        ("flask, werkzeug, jinja2", "import flask"),
        ("flask_babel, babel", "import flask_babel"),
        ("flask_wtf, wtforms", "import flask_wtf"),
        (
            "`hotspot portal run`: the command line (the portal package, every blueprint)",
            PARSER.format(argv=["portal", "run"]),
        ),
        ("gunicorn, portal.server", "import portal.server, gunicorn.app.base"),
        ("a province's policy in force (the worker follows it)", PORTAL_POLICY),
    ],
}

CHILD = """
import re, sys, time
def rss():
    with open('/proc/self/status') as f:
        return int(re.search(r'VmRSS:\\s+(\\d+)', f.read()).group(1))
DB = sys.argv[1]
steps = __import__('json').loads(sys.argv[2])
print('RSS', 'start', rss(), len(sys.modules), flush=True)
for label, stmt in steps:
    print('STEP', label, file=sys.stderr, flush=True)
    exec(stmt)
    print('RSS', label, rss(), len(sys.modules), flush=True)
"""


def measure(tree: Path, process: str, db_url: str) -> list[dict[str, Any]]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPATH"] = str(tree)
    steps = STEPS[process]
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", CHILD, db_url, json.dumps(steps)],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    # importtime lines between two STEP markers belong to the step: the top-level ones
    # (no indentation) carry the cumulative time of everything below them.
    step_us: dict[str, int] = {}
    current = None
    for line in out.stderr.splitlines():
        if line.startswith("STEP "):
            current = line[5:]
            step_us[current] = 0
            continue
        parts = line.split("|")
        top_level = len(parts) == 3 and not parts[2].startswith("  ")
        if current and line.startswith("import time:") and top_level and parts[1].strip().isdigit():
            step_us[current] += int(parts[1])
    rows, previous = [], None
    for line in out.stdout.splitlines():
        _, rest = line.split(" ", 1)
        label, kb, modules = rest.rsplit(" ", 2)
        rss = int(kb) / 1024
        if previous is not None:
            rows.append(
                {
                    "step": label,
                    "rss_mb": round(rss, 1),
                    "added_mb": round(rss - previous[0], 1),
                    "modules_added": int(modules) - previous[1],
                    "import_ms": round(step_us.get(label, 0) / 1000, 1),
                }
            )
        else:
            rows.append({"step": "interpreter", "rss_mb": round(rss, 1)})
        previous = (rss, int(modules))
    return rows


def write_policy(path: Path) -> None:
    """A signed policy envelope for the POLICY_CHECK step (signed here: the measured
    interpreter must not load cryptography to make it)."""
    import datetime as dt

    from hotspot import policy

    key = policy.new_private_key()
    doc = policy.make_document("bench", 1, {}, {}, dt.datetime(2026, 11, 30))
    envelope = policy.sign(key, doc)
    path.write_text(json.dumps([envelope, policy.public_key_of(key), "bench"]))


def compile_tree(tree: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", "hotspot", "gateway", "portal", "hotspot_cli"]
        + ["sync", "collector", "provisioning", "demo"],
        cwd=tree,
        capture_output=True,
        check=False,
    )


def table(results: dict[str, Any]) -> str:
    trees = list(results["trees"])
    out = []
    for process in STEPS:
        head = ["step"]
        for t in trees:
            head += [f"{t}: RSS MB", "+MB", "ms"]
        out.append(f"\n**{process}**\n")
        out.append("| " + " | ".join(head) + " |")
        out.append("|" + "---|" * len(head))
        columns = [results["trees"][t][process] for t in trees]
        for i, row in enumerate(columns[0]):
            cells = [row["step"]]
            for col in columns:
                r = col[i]
                cells += [str(r["rss_mb"]), str(r.get("added_mb", "")), str(r.get("import_ms", ""))]
            out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python3 -m bench.imports", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--tree", help="another checkout to measure beside this one (the baseline)")
    ap.add_argument("--output", default=str(RESULTS / "imports.json"))
    args = ap.parse_args(argv)
    import tempfile

    trees = {"this": REPO}
    if args.tree:
        trees = {"baseline": Path(args.tree).resolve(), "this": REPO}
    results: dict[str, Any] = {"loadavg_start": os.getloadavg(), "trees": {}}
    with tempfile.TemporaryDirectory(prefix="hotspot-bench-imports-") as tmp:
        for name, tree in trees.items():
            compile_tree(tree)
            db_url = f"sqlite:///{tmp}/{name}.db"
            subprocess.run(  # an up-to-date database, as the daemon finds it after the first start
                [
                    sys.executable,
                    "-c",
                    f"from hotspot.db import open_database; open_database({db_url!r})",
                ],
                cwd=tree,
                env={**os.environ, "PYTHONPATH": str(tree)},
                check=True,
                timeout=120,
            )
            write_policy(Path(tmp) / f"{name}-policy.json")
            results["trees"][name] = {p: measure(tree, p, db_url) for p in STEPS}
            results["trees"][name]["path"] = str(tree)
    results["loadavg_end"] = os.getloadavg()
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(results, indent=2) + "\n")
    for t in results["trees"].values():
        t.pop("path")
    print(table(results))
    print(f"\nload {results['loadavg_start']} → {results['loadavg_end']}; written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
