"""Check every rendered file before anything is installed.

The rendered files are written into a scratch tree and checked with the tools that will
read them: ``dnsmasq --test``, ``nft -c`` (the gateway's table, in a throwaway network
namespace), ``systemd-analyze verify``, ``systemd-sysusers``/``systemd-tmpfiles`` (into a
scratch root). hostapd, systemd-networkd and NetworkManager have no check mode: their files
are parsed here against the keys we write. A check whose tool is missing (or that needs
root) is reported as skipped, never as passed.
"""

from __future__ import annotations

import configparser
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from gateway import ruleset
from hotspot import config as config_mod
from hotspot.config import Config
from hotspot.errors import ConfigError
from provisioning.render import File


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool | None  # None = skipped
    detail: str = ""

    def line(self) -> str:
        state = {True: "ok", False: "FAILED", None: "skipped"}[self.ok]
        return f"{self.name}: {state}" + (f" ({self.detail})" if self.detail else "")


class ValidationError(Exception):
    def __init__(self, checks: list[Check]):
        self.checks = checks
        failed = [c for c in checks if c.ok is False]
        super().__init__("; ".join(f"{c.name}: {c.detail}" for c in failed))


def _run(
    args: list[str],
    *,
    input: str | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 60,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args,
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, **(env or {})},
        cwd=cwd,
    )


def _out(proc: subprocess.CompletedProcess[str]) -> str:
    return " ".join((proc.stderr + proc.stdout).split())[:800]


def _is_root() -> bool:
    return os.geteuid() == 0


# -- the checks ---------------------------------------------------------------------------


def check_config(f: File, scratch: Path) -> Check:
    try:
        config_mod.load(scratch / f.path.lstrip("/"))
    except ConfigError as exc:
        return Check(f.path, False, exc.message)
    return Check(f.path, True, "hotspot config")


def check_dnsmasq(f: File, scratch: Path, cfg: Config | None = None) -> Check:
    exe = shutil.which("dnsmasq") or (
        "/usr/sbin/dnsmasq" if os.path.exists("/usr/sbin/dnsmasq") else None
    )
    if exe is None:
        return Check(f.path, None, "dnsmasq is not installed here")
    path = scratch / f.path.lstrip("/")
    live = cfg.dns_filter.conf_dir if cfg is not None else ""
    if live:
        # The gateway's live files (gateway/dnsapply.py) are not written yet: it runs
        # dnsmasq --test on each generation itself before making it current.
        text = f.content.decode()
        lines = [ln for ln in text.splitlines() if not ln.startswith(f"conf-file={live}/")]
        path = path.with_name(f".{path.name}.tested")
        path.write_text("\n".join(lines) + "\n")
    proc = _run([exe, "--test", f"--conf-file={path}"])
    if proc.returncode != 0:
        return Check(f.path, False, f"dnsmasq --test: {_out(proc)}".replace(str(scratch), ""))
    return Check(f.path, True, "dnsmasq --test")


def check_nftset_targets(f: File, cfg: Config) -> Check:
    """Every nftset= line names the gateway's walled_garden_dns set (type ipv4_addr)."""
    layout = ruleset.Layout.from_config(cfg)
    sets = {
        c["add"]["set"]["name"]: c["add"]["set"]
        for c in ruleset.table_commands(layout)
        if "add" in c and "set" in c["add"]
    }
    for line in f.content.decode().splitlines():
        if not line.startswith("nftset="):
            continue
        target = line.rsplit("/", 1)[1]
        m = re.fullmatch(r"4#(\w+)#(\w+)#(\w+)", target)
        if not m or m.group(1) != ruleset.FAMILY or m.group(2) != layout.table:
            return Check(f"{f.path} nftset", False, f"{target!r} is not the gateway's table")
        found = sets.get(m.group(3))
        if (
            found is None
            or found.get("type") != "ipv4_addr"
            or "timeout" not in found.get("flags", [])
        ):
            return Check(
                f"{f.path} nftset",
                False,
                f"{target!r}: no ipv4_addr set with timeouts of that name",
            )
    return Check(f"{f.path} nftset", True, f"targets inet {layout.table} {ruleset.WALLED_DNS}")


def check_ruleset(cfg: Config) -> Check:
    """The gateway's table for this configuration, checked by the kernel (nft -c) in a
    network namespace of its own: nothing is applied anywhere."""
    name = "nftables ruleset"
    nft, unshare = shutil.which("nft"), shutil.which("unshare")
    if nft is None:
        return Check(name, None, "nft is not installed here")
    if not _is_root() or unshare is None:
        return Check(name, None, "nft -c needs root (and unshare)")
    layout = ruleset.Layout.from_config(cfg)
    payload = json.dumps(
        {"nftables": [{"metainfo": {"json_schema_version": 1}}, *ruleset.table_commands(layout)]}
    )
    proc = _run([unshare, "--net", nft, "-c", "-j", "-f", "-"], input=payload)
    if proc.returncode != 0:
        return Check(name, False, f"nft -c: {_out(proc)}")
    return Check(name, True, f"nft -c, table inet {layout.table}")


UNIT_SEARCH_PATH = ("/etc/systemd/system", "/lib/systemd/system", "/usr/lib/systemd/system")


def check_units(units: list[File], dropins: list[File], scratch: Path) -> list[Check]:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        return [
            Check(u.path, None, "systemd-analyze is not installed here") for u in units + dropins
        ]
    unit_dir = scratch / "etc/systemd/system"
    env = {"SYSTEMD_UNIT_PATH": f"{unit_dir}:", "SYSTEMD_LOG_COLOR": "0"}
    checks = []
    for u in units:
        # A path, not a name: a name is first looked up in the working directory.
        proc = _run([analyze, "verify", "--man=no", str(unit_dir / u.name)], env=env, cwd=unit_dir)
        mine = [line for line in proc.stderr.splitlines() if str(scratch) in line or u.name in line]
        checks.append(_verified(u.path, proc, mine, scratch, "systemd-analyze verify"))
    for d in dropins:
        unit = Path(d.path).parent.name[: -len(".d")]
        how = f"systemd-analyze verify {unit}"
        if not any(Path(base, unit).exists() for base in UNIT_SEARCH_PATH):
            # Not installed on this machine (a staging box): check the drop-in's own lines
            # on a stand-in for the package's unit.
            (unit_dir / unit).write_text("[Service]\nExecStart=/bin/true\n")
            how += f" (a stand-in: {unit} is not installed here)"
        # From the scratch folder: systemd-analyze resolves a bare name against the working
        # directory, which may be gone (a checkout deleted after `pip install`).
        proc = _run([analyze, "verify", "--man=no", unit], env=env, cwd=unit_dir)
        mine = [line for line in proc.stderr.splitlines() if str(scratch) in line]
        checks.append(_verified(d.path, proc, mine, scratch, how))
    return checks


def _verified(
    path: str,
    proc: subprocess.CompletedProcess[str],
    mine: list[str],
    scratch: Path,
    how: str,
) -> Check:
    """The verdict of a ``systemd-analyze verify`` run on the file at ``path``: it failed, or
    it complained in ``mine`` (its lines about our file); said without the scratch root."""
    if proc.returncode != 0 or mine:
        return Check(
            path,
            False,
            "systemd-analyze verify: "
            + " ".join(mine or proc.stderr.split())[:800].replace(str(scratch), ""),
        )
    return Check(path, True, how)


def check_users_and_dirs(sysusers: File, tmpfiles: File | None) -> list[Check]:
    """sysusers.d and tmpfiles.d applied to a scratch root (their own parsers)."""
    tools = shutil.which("systemd-sysusers"), shutil.which("systemd-tmpfiles")
    files = [sysusers] + ([tmpfiles] if tmpfiles else [])
    if tools[0] is None or tools[1] is None:
        return [Check(f.path, None, "systemd-sysusers/-tmpfiles not installed here") for f in files]
    if not _is_root():
        return [Check(f.path, None, "needs root (creates users in a scratch root)") for f in files]
    checks = []
    with tempfile.TemporaryDirectory(prefix="hotspot-sysroot-") as root:
        (Path(root) / "etc").mkdir()
        proc = _run(
            [tools[0], f"--root={root}", f"--replace={sysusers.path}", "-"],
            input=sysusers.content.decode(),
        )
        if proc.returncode != 0:
            return [Check(sysusers.path, False, f"systemd-sysusers: {_out(proc)}")]
        checks.append(Check(sysusers.path, True, "systemd-sysusers"))
        if tmpfiles is not None:
            proc = _run(
                [tools[1], f"--root={root}", "--create", f"--replace={tmpfiles.path}", "-"],
                input=tmpfiles.content.decode(),
            )
            checks.append(
                Check(
                    tmpfiles.path,
                    proc.returncode == 0,
                    "systemd-tmpfiles --create"
                    if proc.returncode == 0
                    else f"systemd-tmpfiles: {_out(proc)}",
                )
            )
    return checks


def _sysctl_path(key: str) -> Path:
    """Where a sysctl.d key lives in /proc/sys; a per-interface key is looked up on
    ``default`` (the interface, a bridge made by networkd, may not exist yet)."""
    parts = key.split("/") if "/" in key else key.split(".")
    if len(parts) == 5 and parts[0] == "net" and parts[2] in ("conf", "neigh"):
        parts[3] = "default"
    return Path("/proc/sys", *parts)


# Keys the kernel has in the host's first network namespace only (a container's, such as the
# tests' booted device, has none of them). Written with sysctl.d's "-" (a failure to set the key
# is ignored), they may be absent on the machine that checks.
INITIAL_NAMESPACE_ONLY = frozenset(f"net.ipv4.neigh.default.gc_thresh{n}" for n in (1, 2, 3))


def check_sysctl(f: File) -> Check:
    for line in f.content.decode().splitlines():
        if not line.strip() or line.startswith(("#", ";")):
            continue
        m = re.fullmatch(r"\s*(-?)([A-Za-z0-9_./@:][A-Za-z0-9_./@:-]*)\s*=\s*(\S+)\s*", line)
        if not m:
            return Check(f.path, False, f"not a known sysctl line: {line!r}")
        optional, key = m.group(1) == "-", m.group(2)
        absent_here = optional and key in INITIAL_NAMESPACE_ONLY
        if not _sysctl_path(key).exists() and not absent_here:
            return Check(f.path, False, f"not a known sysctl line: {line!r}")
    return Check(f.path, True, "sysctl keys exist")


HOSTAPD_KEYS = {
    "interface",
    "bridge",
    "driver",
    "country_code",
    "ieee80211d",
    "ssid",
    "ssid2",
    "utf8_ssid",
    "hw_mode",
    "channel",
    "ieee80211n",
    "ieee80211ac",
    "wmm_enabled",
    "auth_algs",
    "ignore_broadcast_ssid",
    "ap_isolate",
    # the operator network's BSS ([management], #10.12)
    "bss",
    "wpa",
    "wpa_key_mgmt",
    "rsn_pairwise",
    "wpa_passphrase",
}


# Only in the operator BSS: the villagers' WiFi is open, the portal is its door.
OPERATOR_BSS_KEYS = {"wpa", "wpa_key_mgmt", "rsn_pairwise", "wpa_passphrase"}


def check_hostapd(f: File, cfg: Config) -> Check:
    sections: list[dict[str, str]] = [{}]  # the villagers' BSS, then each bss= section
    for n, line in enumerate(f.content.decode().splitlines(), 1):
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or key not in HOSTAPD_KEYS or (key in OPERATOR_BSS_KEYS and len(sections) == 1):
            return Check(f.path, False, f"line {n}: unknown hostapd setting {line!r}")
        if key == "bss":
            sections.append({})
        seen = sections[-1]
        if key in seen:
            return Check(f.path, False, f"line {n}: {key} set twice")
        seen[key] = value
    wifi = cfg.wifi
    need = {
        "interface": wifi.interface,
        "bridge": cfg.network.lan_interface,
        "channel": str(wifi.channel),
        "hw_mode": wifi.band,
    }
    for key, want in need.items():
        if sections[0].get(key) != want:
            return Check(f.path, False, f"{key} is {sections[0].get(key)!r}, expected {want!r}")
    for seen in sections:
        if not ("ssid" in seen) ^ ("ssid2" in seen):
            return Check(f.path, False, "exactly one of ssid and ssid2 must be set")
    mgmt = cfg.management
    if len(sections) != 1 + bool(mgmt.ssid):
        return Check(
            f.path, False, f"{len(sections) - 1} bss sections, expected {int(bool(mgmt.ssid))}"
        )
    for seen in sections[1:]:
        if seen.get("bss") != mgmt.wifi_interface or seen.get("bridge") in (
            None,
            cfg.network.lan_interface,
        ):
            return Check(f.path, False, "the operator BSS must have its own interface and bridge")
        if seen.get("wpa") != "2" or not 8 <= len(seen.get("wpa_passphrase", "")) <= 63:
            return Check(f.path, False, "the operator BSS must be WPA2 with a passphrase")
    return Check(f.path, True, "keys checked here: hostapd has no check mode")


INI_KEYS = {
    "networkd": {
        "Match": {"Name"},
        "Link": {"RequiredForOnline"},
        "Network": {
            "Address",
            "ConfigureWithoutCarrier",
            "IgnoreCarrierLoss",
            "LinkLocalAddressing",
            "IPv6AcceptRA",
            "Bridge",
        },
        "NetDev": {"Name", "Kind"},
        "Bridge": {"STP"},
    },
    "nm": {"device-hotspot-desa": {"match-device", "managed"}},
    "timesyncd": {"Time": {"NTP", "FallbackNTP"}},
}


def check_ini(f: File) -> Check:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # type: ignore[assignment]  # keys are case-sensitive
    try:
        parser.read_string(f.content.decode(), source=f.path)
    except configparser.Error as exc:
        return Check(f.path, False, str(exc).splitlines()[0])
    allowed = INI_KEYS[f.kind]
    for section in parser.sections():
        if section not in allowed:
            return Check(f.path, False, f"unexpected section [{section}]")
        for key in parser[section]:
            if key not in allowed[section]:
                return Check(f.path, False, f"unexpected key {key} in [{section}]")
    tool = {"networkd": "systemd-networkd", "timesyncd": "systemd-timesyncd"}.get(
        f.kind, "NetworkManager"
    )
    return Check(f.path, True, f"keys checked here: {tool} has no check mode")


# -- all of them --------------------------------------------------------------------------


def validate(files: Iterable[File], cfg: Config) -> list[Check]:
    """Check every file; raises :class:`ValidationError` if one fails."""
    files = list(files)
    checks: list[Check] = []
    with tempfile.TemporaryDirectory(prefix="hotspot-validate-") as tmp:
        scratch = Path(tmp)
        for f in files:
            target = scratch / f.path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(f.content)
        by_kind: dict[str, list[File]] = {}
        for f in files:
            by_kind.setdefault(f.kind, []).append(f)
        per_file: dict[str, Callable[[File], Check]] = {
            "config": lambda f: check_config(f, scratch),
            "sysctl": check_sysctl,
            "hostapd": lambda f: check_hostapd(f, cfg),
            "networkd": check_ini,
            "nm": check_ini,
            "timesyncd": check_ini,
        }
        for f in files:
            if f.kind in per_file:
                checks.append(per_file[f.kind](f))
            elif f.kind == "dnsmasq":
                checks.append(check_dnsmasq(f, scratch, cfg))
                checks.append(check_nftset_targets(f, cfg))
        if "sysusers" in by_kind:
            checks += check_users_and_dirs(
                by_kind["sysusers"][0], (by_kind.get("tmpfiles") or (None,))[0]
            )
        if "unit" in by_kind or "dropin" in by_kind:
            checks += check_units(by_kind.get("unit", []), by_kind.get("dropin", []), scratch)
        if "dnsmasq" in by_kind:  # the village gateway: its table must load
            checks.append(check_ruleset(cfg))
    if any(c.ok is False for c in checks):
        raise ValidationError(checks)
    return checks
