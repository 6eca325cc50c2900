"""``hotspot provision``: render, validate, compare, install, and bring the services up.

Idempotent: every file is rendered in memory and compared byte for byte (and by mode and
group) with what is installed; only what differs is written, atomically (temporary file,
fsync, rename, fsync of the folder: a power cut leaves the old file or the new one, never
half of one). The host steps (users, directories, database, services) are planned from the
host's state, so a second run finds nothing to do and says so.

``--root DIR`` writes the files under DIR and touches nothing else on the host (it lists
the host steps a real run would take); ``--dry-run`` prints the differences and the plan and
changes nothing.
"""

from __future__ import annotations

import difflib
import grp
import os
import pwd
import re
import shutil
import sqlite3
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hotspot import config as config_mod
from hotspot.config import Config
from hotspot.errors import ErrorCode, HotspotError, UsageError
from provisioning import render as R
from provisioning.render import File
from provisioning.validate import ValidationError, validate


class ProvisionError(HotspotError):
    code = ErrorCode.PROVISION


# -- the host -----------------------------------------------------------------------------


class Host:
    """What provisioning asks of and does to the machine. Tests use a fake."""

    def is_root(self) -> bool:
        return os.geteuid() == 0

    def user_exists(self, name: str) -> bool:
        try:
            pwd.getpwnam(name)
            return True
        except KeyError:
            return False

    def group_gid(self, name: str) -> int | None:
        try:
            return grp.getgrnam(name).gr_gid
        except KeyError:
            return None

    def missing_packages(self, names: Sequence[str]) -> list[str]:
        if shutil.which("dpkg-query") is None:
            return []
        missing = []
        for name in names:
            proc = subprocess.run(
                ["dpkg-query", "-W", "-f=${Status}", name],
                capture_output=True,
                text=True,
                check=False,
            )
            if proc.returncode != 0 or not proc.stdout.endswith(" installed"):
                missing.append(name)
        return missing

    def _systemctl(self, verb: str, unit: str, *options: str) -> str:
        proc = subprocess.run(
            ["systemctl", verb, *options, unit], capture_output=True, text=True, check=False
        )
        return proc.stdout.strip()

    def unit_enabled(self, unit: str) -> bool:
        return self._systemctl("is-enabled", unit) in (
            "enabled",
            "enabled-runtime",
            "static",
            "alias",
        )

    def unit_masked(self, unit: str) -> bool:
        return self._systemctl("is-enabled", unit).startswith("masked")

    def unit_active(self, unit: str) -> bool:
        if self._systemctl("is-active", unit) == "active":
            return True
        # A unit whose start conditions fail on this machine (systemd-timesyncd in a
        # container: ConditionVirtualization=!container) is as started as it can be here:
        # starting it again would change nothing, and provision would never be done.
        shown = self._systemctl(
            "show", unit, "--property=ConditionResult", "--property=ConditionTimestampMonotonic"
        )
        props = dict(line.split("=", 1) for line in shown.splitlines() if "=" in line)
        # ConditionResult is "no" too for a unit never started: only a checked condition counts.
        checked = props.get("ConditionTimestampMonotonic", "0") not in ("", "0")
        return checked and props.get("ConditionResult") == "no"

    def forwarding(self) -> bool:
        try:
            return Path("/proc/sys/net/ipv4/ip_forward").read_text().strip() == "1"
        except OSError:
            return False

    def dir_ok(self, path: str, mode: int, user: str, group: str) -> bool:
        try:
            st = os.stat(path)
            return (
                st.st_mode & 0o7777 == mode
                and st.st_uid == pwd.getpwnam(user).pw_uid
                and st.st_gid == grp.getgrnam(group).gr_gid
            )
        except (OSError, KeyError):
            return False

    def db_current(self, url: str) -> bool:
        """The schema is at the newest revision (looked at read-only: nothing is created)."""
        from alembic.script import ScriptDirectory

        from hotspot.db import alembic_config

        head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
        path = config_mod.database_path(url)
        if path is None:
            try:
                from hotspot.db import is_current, make_engine

                engine = make_engine(url)
                try:
                    return is_current(engine)
                finally:
                    engine.dispose()
            except Exception:  # noqa: BLE001 - unreachable or empty: upgrade says why
                return False
        if not path.exists():
            return False
        try:
            with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
                row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        except sqlite3.Error:
            return False
        return row is not None and row[0] == head

    def file_mode(self, path: str) -> int | None:
        try:
            return os.stat(path).st_mode & 0o7777
        except OSError:
            return None

    def wlan_blocked(self) -> bool:
        for dev in Path("/sys/class/rfkill").glob("rfkill*"):
            try:
                if (dev / "type").read_text().strip() == "wlan" and (
                    dev / "soft"
                ).read_text().strip() == "1":
                    return True
            except OSError:
                continue
        return False

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def do(self, step: Step) -> None:
        if step.fn is not None:
            step.fn()
        else:
            self.run(step.argv)

    def run(self, argv: Sequence[str]) -> None:
        # apt-get must never stop to ask (a conffile prompt would hang the run).
        proc = subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            check=False,
            timeout=900,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )
        if proc.returncode != 0:
            why = (proc.stderr or proc.stdout).strip().splitlines()
            raise ProvisionError(
                f"{' '.join(argv)} failed ({proc.returncode})" + (f": {why[-1]}" if why else "")
            )


# -- files --------------------------------------------------------------------------------


@dataclass
class Change:
    file: File
    state: str  # created, updated, fixed (mode or group only), unchanged, removed
    old: bytes | None = None

    @property
    def changed(self) -> bool:
        return self.state != "unchanged"


def target(root: str | None, path: str) -> Path:
    return Path(root, path.lstrip("/")) if root else Path(path)


def compare(
    files: Sequence[File], root: str | None, host: Host, removable: Sequence[str] = R.OPTIONAL
) -> list[Change]:
    changes = []
    for f in files:
        p = target(root, f.path)
        try:
            old = p.read_bytes()
            st = p.stat()
        except FileNotFoundError:
            changes.append(Change(f, "created"))
            continue
        if old != f.content:
            changes.append(Change(f, "updated", old))
            continue
        mode_ok = st.st_mode & 0o7777 == f.mode
        group_ok = root is not None or st.st_gid == host.group_gid(f.group)
        changes.append(Change(f, "unchanged" if mode_ok and group_ok else "fixed", old))
    wanted = {f.path for f in files}
    for path in removable:
        p = target(root, path)
        if path in wanted or not p.is_file():
            continue
        old = p.read_bytes()
        if R.MARKER.encode() in old[:400]:
            kind = "unit" if path.endswith(".service") else "removed"
            restarts = (Path(path).stem,) if path.endswith(".service") else ()
            changes.append(Change(File(path, b"", 0, kind, restarts=restarts), "removed", old))
    return changes


def atomic_write(path: Path, data: bytes, mode: int, gid: int | None) -> None:
    """Replace ``path`` with ``data`` so that a power cut leaves the old or the new file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # A leading dot: dnsmasq's conf-dir and systemd both skip such a name.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fchmod(fh.fileno(), mode)
            if gid is not None:
                os.fchown(fh.fileno(), 0, gid)
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def apply_change(c: Change, root: str | None, host: Host) -> None:
    p = target(root, c.file.path)
    gid = None if root is not None else host.group_gid(c.file.group)
    if c.state == "removed":
        p.unlink()
        _fsync_dir(p.parent)
    elif c.state == "fixed":
        os.chmod(p, c.file.mode)
        if gid is not None:
            os.chown(p, 0, gid)
    elif c.state in ("created", "updated"):
        atomic_write(p, c.file.content, c.file.mode, gid)


_SECRET = re.compile(
    r"^(\s*[\w.-]*(?:secret|token|password|pseudonym_key)\s*=\s*).+$", re.IGNORECASE | re.MULTILINE
)


def _shown(c: Change, data: bytes | None) -> list[str]:
    if data is None:
        return []
    text = data.decode(errors="replace")
    if c.file.kind == "config":
        text = _SECRET.sub(r'\1"(hidden)"', text)
    return text.splitlines(keepends=True)


def diff(c: Change) -> str:
    if c.state == "fixed":
        return f"mode/group of {c.file.path}: {c.file.mode:04o} root:{c.file.group}\n"
    old = _shown(c, c.old)
    new = [] if c.state == "removed" else _shown(c, c.file.content)
    lines = difflib.unified_diff(
        old,
        new,
        fromfile=c.file.path if c.old is not None else "/dev/null",
        tofile=c.file.path if c.state != "removed" else "/dev/null",
    )
    out = "".join(
        line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines
    )
    return out


# -- host steps ---------------------------------------------------------------------------


@dataclass
class Step:
    argv: list[str]  # what is run (or, for a step done in-process, what it does)
    why: str
    fn: Callable[[], None] | None = field(default=None, repr=False, compare=False)

    def line(self) -> str:
        return f"{' '.join(self.argv)}  # {self.why}"


@dataclass
class Plan:
    users: list[Step] = field(default_factory=list)  # before the other files are written
    before: list[Step] = field(default_factory=list)  # before files are removed
    after: list[Step] = field(default_factory=list)

    @property
    def steps(self) -> list[Step]:
        return self.users + self.before + self.after


def packages_for(cfg: Config) -> list[str]:
    # Time without a real-time clock: NTP, and the last known time kept across power cuts.
    pkgs = ["dnsmasq", "nftables", "iproute2", "systemd-timesyncd", "fake-hwclock"]
    if cfg.wifi.enabled:
        pkgs += ["hostapd", "rfkill"]
    return pkgs


def _create_secret(path: str, group: str) -> Callable[[], None]:
    def create() -> None:
        try:
            from hotspot.vouchers.keys import load_key  # the portal's format: 32 random bytes, hex
        except ImportError as exc:
            raise ProvisionError(f"cannot create {path}: {exc}") from None
        load_key(path, create=True, group=group, what="secret")

    return create


def plan(
    cfg: Config, changes: Sequence[Change], host: Host, hotspot: str, fresh: bool = False
) -> Plan:
    """The host steps: from the host's state, or as on a fresh machine (``fresh``, --root)."""
    p = Plan()
    # A mode or group repaired ("fixed") needs no reload: the content is what runs.
    changed = {c.file.path: c for c in changes if c.changed and c.state != "fixed"}
    kinds = {c.file.kind for c in changed.values()}
    restarts = {s for c in changed.values() for s in c.file.restarts}
    user, group = R.service_user(cfg), cfg.control.group
    state = R.state_dir(cfg)
    if (
        fresh
        or R.SYSUSERS in changed
        or not host.user_exists(user)
        or not host.user_exists(R.SYNC_USER)
        or host.group_gid(group) is None
        or host.group_gid(R.DATA_GROUP) is None
    ):
        p.users.append(
            Step(
                ["systemd-sysusers", R.SYSUSERS],
                f"system users {user} and {R.SYNC_USER}, groups {group} and {R.DATA_GROUP}",
            )
        )
    for unit in R.idle_units(cfg):
        if not fresh and (host.unit_enabled(unit) or host.unit_active(unit)):
            p.before.append(
                Step(
                    ["systemctl", "disable", "--now", unit],
                    "not configured (sync.upstream_url is empty)",
                )
            )
    for c in changes:
        if c.state == "removed" and c.file.path.endswith(".service"):
            unit = Path(c.file.path).name
            if fresh or host.unit_enabled(unit) or host.unit_active(unit):
                p.before.append(
                    Step(
                        ["systemctl", "disable", "--now", unit],
                        "no longer wanted by the configuration",
                    )
                )
    if fresh or R.TMPFILES in changed or not host.dir_ok(state, 0o2770, "root", R.DATA_GROUP):
        p.after.append(
            Step(
                ["systemd-tmpfiles", "--create", R.TMPFILES],
                f"{state} (2770 root:{R.DATA_GROUP}) and /etc/hotspot",
            )
        )
    if fresh or R.SYSCTL in changed:
        # -e: the LAN bridge's key waits for the bridge (udev applies it when it appears).
        # IPv4 forwarding is the gateway's to switch on, after its table (issue #11.1).
        p.after.append(
            Step(["sysctl", "-q", "-e", "-p", R.SYSCTL], "no router adverts from the LAN")
        )
    db_file = config_mod.database_path(cfg.database.url)
    if fresh or not host.db_current(cfg.database.url):
        p.after.append(
            Step(
                ["runuser", "-u", user, "--", hotspot, "--config", R.CONFIG_PATH, "db", "upgrade"],
                "create or migrate the database",
            )
        )
    if db_file is not None and (
        fresh or host.file_mode(str(db_file)) != 0o660 or not host.db_current(cfg.database.url)
    ):
        p.after.append(
            Step(
                ["chmod", "0660", str(db_file)],
                f"the gateway (root without CAP_DAC_OVERRIDE) and the sync agent write it "
                f"as {R.DATA_GROUP}",
            )
        )
    if fresh or kinds & {"unit", "dropin"}:
        p.after.append(Step(["systemctl", "daemon-reload"], "unit files changed"))
    if not fresh and "networkd" in kinds and host.unit_active("systemd-networkd"):
        p.after.append(Step(["networkctl", "reload"], "systemd-networkd files changed"))
    if not fresh and "nm" in kinds and host.unit_active("NetworkManager"):
        p.after.append(
            Step(
                ["systemctl", "reload", "NetworkManager"],
                "leave the LAN interfaces to systemd-networkd and hostapd",
            )
        )
    # The portal runs as {user} under ProtectSystem=strict: it cannot create them in /etc.
    for path in (cfg.portal.voucher_key_file, cfg.portal.secret_key_file):
        if fresh or not host.exists(path):
            p.after.append(
                Step(
                    ["create-secret", path],
                    f"0640 root:{group}, for the portal",
                    fn=_create_secret(path, group),
                )
            )
    svcs = R.services(cfg)
    if "hostapd" in svcs:
        if fresh or host.unit_masked("hostapd"):
            p.after.append(
                Step(["systemctl", "unmask", "hostapd"], "Raspberry Pi OS ships hostapd masked")
            )
        if fresh or host.wlan_blocked():
            p.after.append(Step(["rfkill", "unblock", "wlan"], "WiFi is blocked until used"))
    for svc in svcs:
        if fresh:
            p.after.append(Step(["systemctl", "enable", "--now", svc], "start at boot and now"))
            continue
        enabled, active = host.unit_enabled(svc), host.unit_active(svc)
        if not enabled:
            p.after.append(Step(["systemctl", "enable", svc], "start at boot"))
        if not active:
            p.after.append(Step(["systemctl", "start", svc], "not running"))
        elif svc in restarts:
            p.after.append(Step(["systemctl", "restart", svc], "its files changed"))
    return p


# -- the command --------------------------------------------------------------------------


@dataclass
class Options:
    config: str
    root: str | None = None
    dry_run: bool = False


def _with_policy(cfg: config_mod.Config, out: Callable[[str], None]) -> config_mod.Config:
    """The file with the province's last good policy over it (verified again, as the gateway
    does at start): the resolvers' walled-garden names and timesyncd's servers follow it.
    The file installed stays the village's own."""
    from gateway.policy import PolicyKeeper

    keeper = PolicyKeeper(cfg)
    effective = keeper.load()
    if keeper.version:
        out(f"the province's policy version {keeper.version} is laid over {cfg.source}")
    elif keeper.last_refusal:
        out(f"warning: the kept policy was refused ({keeper.last_refusal['message']})")
    return effective


def provision(opts: Options, host: Host | None = None, out: Callable[[str], None] = print) -> int:
    """Run ``hotspot provision``; 0 when done (or nothing to do)."""
    host = host or Host()
    if opts.root is None and not host.is_root():
        raise UsageError("provision: must run as root (or stage into a folder with --root DIR)")
    cfg = _with_policy(config_mod.load(opts.config), out)
    try:
        source = Path(opts.config).read_bytes()
        hotspot = R.entry_point()
    except R.RenderError as exc:
        raise ProvisionError(str(exc)) from None
    where = f"staging root {opts.root}" if opts.root else "this machine"
    mode = " (dry run: nothing is changed)" if opts.dry_run else ""
    out(f"provisioning {cfg.village.name!r} from {opts.config} into {where}{mode}")

    hidden = R.hidden_from_services(R.software_paths(hotspot))
    if hidden:
        msg = (
            f"the services cannot see {hidden[0]} (ProtectHome=/PrivateTmp= hide it): "
            "install Hotspot Desa outside /home, /root and /tmp, e.g. in a venv in /opt/hotspot"
        )
        if opts.root is None and not opts.dry_run:
            raise UsageError(f"provision: {msg}")
        out(f"warning: {msg}")

    if opts.root is None:
        missing = host.missing_packages(packages_for(cfg))
        if missing:
            step = Step(
                ["apt-get", "install", "-y", "--no-install-recommends", *missing],
                "tools the gateway needs",
            )
            if opts.dry_run:
                out(f"would run: {step.line()}")
            else:
                out(f"run: {step.line()}")
                host.run(step.argv)

    files = R.render(cfg, source, hotspot=hotspot)
    try:
        checks = validate(files, cfg)
    except ValidationError as exc:
        for chk in exc.checks:
            if chk.ok is False:
                out(f"invalid: {chk.line()}")
        raise ProvisionError(
            f"{sum(c.ok is False for c in exc.checks)} rendered file(s) failed "
            "validation; nothing was installed"
        ) from None
    passed = [c for c in checks if c.ok]
    skipped = [c for c in checks if c.ok is None]
    out(
        f"validated: {len(passed)} checks passed" + (f", {len(skipped)} skipped" if skipped else "")
    )
    for chk in skipped:
        out(f"  skipped: {chk.line()}")

    changes = compare(files, opts.root, host)
    fresh = opts.root is not None
    steps = plan(cfg, changes, host, hotspot, fresh=fresh)

    if opts.dry_run:
        for c in changes:
            if c.changed:
                out(f"{c.state} {c.file.path}")
                text = diff(c)
                if text:
                    out(text.rstrip("\n"))
        _report_steps(steps, opts, out, verb="would run")
        n = sum(c.changed for c in changes)
        host_steps = 0 if fresh else len(steps.steps)
        if n or host_steps:
            out(
                f"dry run: {n} file(s) would change"
                + (f", {host_steps} host step(s) would run" if host_steps else "")
                + (" (host steps are never taken with --root)" if fresh else "")
            )
        else:
            out(f"dry run: nothing to do (all {len(changes)} files as installed)")
        return 0

    # Users first: the other files are owned by their group.
    user_files = [c for c in changes if c.file.path == R.SYSUSERS]
    rest = [c for c in changes if c.file.path != R.SYSUSERS]
    for c in user_files:
        _apply(c, opts.root, host, out)
    if opts.root is None:
        for step in steps.users + steps.before:
            out(f"run: {step.line()}")
            host.do(step)
    for c in rest:
        _apply(c, opts.root, host, out)
    if opts.root is None:
        for step in steps.after:
            out(f"run: {step.line()}")
            host.do(step)
    else:
        _report_steps(steps, opts, out, verb="skipped (--root)")

    n = sum(c.changed for c in changes)
    ran = 0 if opts.root is not None else len(steps.steps)
    if n == 0 and ran == 0:
        extra = "" if opts.root is None else " (host steps are never taken with --root)"
        out(f"nothing to do: all {len(changes)} files already as provisioned{extra}")
    else:
        counts = {
            s: sum(c.state == s for c in changes)
            for s in ("created", "updated", "fixed", "removed")
        }
        parts = [f"{v} {k}" for k, v in counts.items() if v]
        if ran:
            parts.append(f"{ran} host step(s) run")
        out("done: " + ", ".join(parts))
    return 0


def _apply(c: Change, root: str | None, host: Host, out: Callable[[str], None]) -> None:
    if c.changed:
        apply_change(c, root, host)
    out(f"{c.state:9} {target(root, c.file.path)}")


def _report_steps(steps: Plan, opts: Options, out: Callable[[str], None], verb: str) -> None:
    if opts.root is not None and opts.dry_run:
        verb = "skipped (--root)"
    for step in steps.steps:
        out(f"{verb}: {step.line()}")


def main(args: object) -> int:
    """``hotspot provision`` from the parsed command line."""
    path = getattr(args, "config", None) or os.environ.get(config_mod.ENV_CONFIG)
    if not path:
        if not os.path.exists(config_mod.DEFAULT_CONFIG_PATH):
            raise UsageError("provision: give the village's file with --config FILE")
        path = config_mod.DEFAULT_CONFIG_PATH
    return provision(
        Options(
            config=path,
            root=getattr(args, "root", None),
            dry_run=bool(getattr(args, "dry_run", False)),
        )
    )
