"""Render every file a village gateway (or the provincial collector) needs, in memory.

Nothing here touches the disk except reading the templates: :func:`render` returns
:class:`File` objects (target path, bytes, mode, group, what to restart when it changes);
:mod:`provisioning.validate` checks them and :mod:`provisioning.install` installs them.
"""

from __future__ import annotations

import copy
import os
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import jinja2

from gateway.ruleset import FAMILY, WALLED_DNS
from hotspot import config as config_mod
from hotspot.config import Config

MARKER = "Managed by `hotspot provision`"
HEADER = (
    f"# {MARKER} from {config_mod.DEFAULT_CONFIG_PATH}: edit that file and\n"
    "# run `hotspot provision` again; changes made here are overwritten."
)
REFERENCE_HEADER = (
    "# Reference copy, made by `python3 -m provisioning.render --reference DIR`.\n"
    "# `hotspot provision` installs this unit with the real path of the `hotspot`\n"
    "# command and the user, group and directories of the configuration."
)
DEFAULT_ENTRY_POINT = "/usr/local/bin/hotspot"
CONFIG_PATH = config_mod.DEFAULT_CONFIG_PATH
COLLECTOR_CONFIG_PATH = "/etc/hotspot/collector.toml"  # collector.config.DEFAULT_CONFIG_PATH

# Where everything goes on the device.
SYSUSERS = "/etc/sysusers.d/hotspot.conf"
TMPFILES = "/etc/tmpfiles.d/hotspot.conf"
SYSCTL = "/etc/sysctl.d/90-hotspot.conf"
TIMESYNCD = "/etc/systemd/timesyncd.conf.d/90-hotspot.conf"
DNSMASQ = "/etc/dnsmasq.d/hotspot.conf"
# The walled resolver's file: not in /etc/dnsmasq.d, which Debian's dnsmasq reads whole.
WALLED_DNS_CONF = "/etc/hotspot/walled-dns.conf"
WALLED_DNS_UNIT = "hotspot-walled-dns"
# Where the walled resolver asks for the names it may answer: the gateway's own dnsmasq.
MAIN_RESOLVER = "127.0.0.1"
HOSTAPD = "/etc/hostapd/hostapd.conf"
HOSTAPD_DROPIN = "/etc/systemd/system/hostapd.service.d/hotspot.conf"
DNSMASQ_DROPIN = "/etc/systemd/system/dnsmasq.service.d/hotspot.conf"
NETDEV = "/etc/systemd/network/10-hotspot-lan.netdev"
NETWORK = "/etc/systemd/network/10-hotspot-lan.network"
PORTS_NETWORK = "/etc/systemd/network/10-hotspot-lan-ports.network"
NM_CONF = "/etc/NetworkManager/conf.d/90-hotspot.conf"
# The operator network ([management], #10.12).
MGMT_BRIDGE = "br-mgmt"
MGMT_NETDEV = "/etc/systemd/network/10-hotspot-mgmt.netdev"
MGMT_NETWORK = "/etc/systemd/network/10-hotspot-mgmt.network"
MGMT_PORT_NETWORK = "/etc/systemd/network/10-hotspot-mgmt-port.network"
MGMT_DNSMASQ = "/etc/dnsmasq.d/hotspot-management.conf"
UNIT_DIR = "/etc/systemd/system"
# Restarts dnsmasq when the gateway wrote the resolvers' files anew ([dns_filter] conf_dir).
DNS_RELOAD = "hotspot-dns-reload"
# The village gateway's own services; hotspot-portal-tls only with [portal] tls_cert.
# hotspot-collector runs on the provincial server: a reference unit only (docs/provisioning.md).
ALL_UNITS = (
    "hotspot-walled-dns",
    "hotspot-gateway",
    "hotspot-portal",
    "hotspot-portal-tls",
    "hotspot-sync",
    "hotspot-summary",
    "hotspot-collector",
)

# Files we may have written once and must remove when the configuration no longer wants
# them (only if they still carry MARKER: a file somebody else wrote is left alone).
OPTIONAL = (
    HOSTAPD,
    HOSTAPD_DROPIN,
    PORTS_NETWORK,
    NETDEV,
    NETWORK,
    NM_CONF,
    DNSMASQ,
    MGMT_NETDEV,
    MGMT_NETWORK,
    MGMT_PORT_NETWORK,
    MGMT_DNSMASQ,
    SYSCTL,
    DNSMASQ_DROPIN,
    f"{UNIT_DIR}/{DNS_RELOAD}.path",
    f"{UNIT_DIR}/{DNS_RELOAD}.service",
    *(f"{UNIT_DIR}/{u}.service" for u in ALL_UNITS if u != "hotspot-collector"),
)

_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(Path(__file__).with_name("templates"))),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
    trim_blocks=True,
    lstrip_blocks=True,
    autoescape=False,
)


@dataclass(frozen=True)
class File:
    path: str  # absolute path on the device
    content: bytes
    mode: int
    kind: str  # config, sysusers, tmpfiles, sysctl, dnsmasq, hostapd, networkd, nm, unit, dropin
    group: str = "root"  # the owner is always root
    restarts: tuple[str, ...] = ()  # services restarted when this file changes

    @property
    def name(self) -> str:
        return PurePosixPath(self.path).name


class RenderError(Exception):
    """The configuration cannot be rendered (says why)."""


# -- derived values -----------------------------------------------------------------------


def _origin(scheme: str, host: str, port: int) -> str:
    return f"{scheme}://{host}" + ("" if port == (443 if scheme == "https" else 80) else f":{port}")


def api_url(cfg: Config) -> str:
    """The RFC 8908 captive-portal API URL announced in DHCP option 114: ``[dhcp]
    captive_api_url`` if set, else what the portal says it serves (portal.urls)."""
    if cfg.dhcp.captive_api_url:
        return cfg.dhcp.captive_api_url
    try:
        from portal.urls import PortalUrls
    except ImportError:  # the same rule, for a tree without the portal
        portal, port = cfg.portal, cfg.network.portal_port
        if portal.hostname and portal.tls:
            base = _origin("https", portal.hostname, portal.https_port)
        elif portal.hostname:
            base = _origin("http", portal.hostname, port)
        else:
            base = _origin("http", str(cfg.network.gateway_ip), port)
        return base + "/api/captive"
    return PortalUrls.from_config(cfg).api_url


def service_user(cfg: Config) -> str:
    return cfg.portal.user or "hotspot"


# Least privilege (issue #10, item 18): the internet-facing sync agent has its own user. It
# shares only the database (group DATA_GROUP: the state directory, the SQLite file and its
# WAL) and the configuration; the control socket and the voucher key stay with the control
# group, which it is not in.
SYNC_USER = "hotspot-sync"
DATA_GROUP = "hotspot-data"


def state_dir(cfg: Config) -> str:
    """Where the services may write: the SQLite database's folder (else /var/lib/hotspot)."""
    path = config_mod.database_path(cfg.database.url)
    return str(path.parent) if path is not None else "/var/lib/hotspot"


def entry_point() -> str:
    """The installed ``hotspot`` command of this Python (venv, /usr/local or pyenv)."""
    candidates = [
        Path(sysconfig.get_path("scripts")) / "hotspot",
        Path(sys.executable).parent / "hotspot",
    ]
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    raise RenderError(
        "cannot find the installed `hotspot` command next to "
        f"{sys.executable}: install the package (pip install .) first"
    )


HIDDEN_PREFIXES = ("/home", "/root", "/run/user", "/tmp", "/var/tmp")


def hidden_from_services(paths: list[str]) -> list[str]:
    """Paths the units' ProtectHome=/PrivateTmp= would hide (the software must not live there)."""
    out = []
    for p in paths:
        resolved = os.path.realpath(p)
        for prefix in HIDDEN_PREFIXES:
            if resolved == prefix or resolved.startswith(prefix + "/"):
                out.append(p if resolved == p else f"{p} ({resolved})")
                break
    return out


def software_paths(hotspot: str) -> list[str]:
    """What the services execute and import: the command, the interpreter, the packages."""
    import gateway
    import hotspot as hotspot_pkg

    return [
        hotspot,
        sys.executable,
        str(Path(hotspot_pkg.__file__).parent),
        str(Path(gateway.__file__).parent),
    ]


# -- rendering ----------------------------------------------------------------------------


def _template(name: str, **values: object) -> bytes:
    return _env.get_template(name).render(**values).encode()


# Neighbour entries besides the DHCP pool's: the uplink's next hops, the management port's,
# hosts with static addresses on the LAN.
NEIGH_SPARE = 256


def neighbour_thresholds(devices: int) -> tuple[int, int, int]:
    """``gc_thresh1``..``3`` of the kernel's IPv4 neighbour table for a LAN of ``devices``
    DHCP addresses. Every device present needs an entry, logged in or not (a walled phone
    reaches the portal through it; the pins of logged-in phones are PERMANENT and not
    counted), and past ``gc_thresh3`` the kernel makes none ("neighbour table overflow": a
    new phone gets no page). The defaults, 128/512/1024, overflow past ~1,000 devices; these
    are never below them."""
    room = devices + NEIGH_SPARE
    return max(128, room // 2), max(512, room), max(1024, 2 * room)


def _sysctl_conf_key(family: str, ifname: str, key: str) -> str:
    """A per-interface sysctl.d key; with slashes when the name has a dot (eth0.100)."""
    if "." in ifname:
        return f"net/{family}/conf/{ifname}/{key}"
    return f"net.{family}.conf.{ifname}.{key}"


def _ssid_line(ssid: str) -> tuple[str, bool]:
    """hostapd's ssid line: plain when that is unambiguous, else ssid2=P"…" (escaped)."""
    utf8 = not ssid.isascii()
    if not utf8 and ssid == ssid.strip() and "\\" not in ssid and '"' not in ssid:
        return f"ssid={ssid}", False
    escaped = ssid.replace("\\", "\\\\").replace('"', '\\"')
    return f'ssid2=P"{escaped}"', utf8


def _values(cfg: Config, hotspot: str, header: str) -> dict[str, object]:
    net = cfg.network
    portal = cfg.portal
    dhcp = cfg.dhcp
    wifi = cfg.wifi
    mgmt = cfg.management
    # The wired management port leaves the LAN bridge (it may be one of lan_ports).
    lan_ports = [p for p in net.lan_ports if p != mgmt.wired_port]
    unmanaged = [net.lan_interface, *net.lan_ports] + ([wifi.interface] if wifi.enabled else [])
    if mgmt.enabled:
        unmanaged += [MGMT_BRIDGE, *([mgmt.wired_port] if mgmt.wired_port else [])]
        if mgmt.ssid:
            unmanaged.append(mgmt.wifi_interface)
    ssid_line, utf8 = _ssid_line(wifi.ssid)
    mgmt_ssid_line, mgmt_utf8 = _ssid_line(mgmt.ssid) if mgmt.ssid else ("", False)
    hosts = list(mgmt.network.hosts()) if mgmt.enabled else []
    others = [h for h in hosts if str(h) != mgmt.gateway_ip] if hosts else []
    return {
        "mgmt": mgmt,
        "mgmt_bridge": MGMT_BRIDGE,
        "mgmt_network": str(mgmt.network) if mgmt.enabled else "",
        "mgmt_netmask": str(mgmt.network.netmask) if mgmt.enabled else "",
        "mgmt_range_start": str(others[len(others) // 2]) if others else "",
        "mgmt_range_end": str(others[-1]) if others else "",
        "mgmt_ssid_line": mgmt_ssid_line,
        "mgmt_utf8_ssid": mgmt_utf8,
        "header": header,
        "ntp_servers": cfg.gateway.ntp_servers,
        "fallback_ntp_servers": cfg.gateway.fallback_ntp_servers,
        "hotspot": hotspot,
        "config_path": CONFIG_PATH,
        "collector_config_path": COLLECTOR_CONFIG_PATH,
        "config_dir": str(PurePosixPath(CONFIG_PATH).parent),
        "user": service_user(cfg),
        "group": cfg.control.group,
        "data_group": DATA_GROUP,
        "sync_user": SYNC_USER,
        # [printer]: the USB receipt printer the portal writes to ("" = none)
        "printer_device": cfg.printer.device if cfg.printer.enabled else "",
        "control_dir": str(PurePosixPath(cfg.control.socket).parent),
        "voucher_key": cfg.portal.voucher_key_file,
        "portal_secret": cfg.portal.secret_key_file,
        "state_dir": state_dir(cfg),
        # The province's last good policy (the gateway writes it; issue #15).
        "policy_dir": str(PurePosixPath(cfg.policy.state_file).parent),
        "db_file": str(config_mod.database_path(cfg.database.url) or ""),
        "lan": net.lan_interface,
        "lan_address": net.lan_address,
        "lan_network": str(net.lan_network),
        # RADIUS (docs/radius.md): the only addresses the gateway and the portal reach by IP
        "radius_servers": (
            sorted({s.host for s in cfg.radius.servers}) if cfg.radius.enabled else []
        ),
        "lan_ports": lan_ports,
        "netmask": str(net.lan_network.netmask),
        "gateway_ip": str(net.gateway_ip),
        "portal_hostname": portal.hostname,
        # the plain-HTTP portal; render_unit() switches these for hotspot-portal-tls
        "portal_tls": False,
        "portal_bind_cap": net.portal_port < 1024,
        "upstream_dns": list(dhcp.upstream_dns),
        "range_start": dhcp.range_start,
        "range_end": dhcp.range_end,
        "range_size": dhcp.size,
        "lease_minutes": dhcp.lease_minutes,
        "api_url": api_url(cfg),
        "garden_domains": list(net.walled_garden_domains),
        # The gateway writes the garden by name, the DNS filter and the NTP servers here
        # live (gateway/dnsapply.py); "" = these templates carry the garden themselves.
        "dns_conf_dir": cfg.dns_filter.conf_dir,
        "probe_hosts": list(net.captive_probe_hosts),
        "walled_hosts_dir": cfg.uplink.walled_hosts_dir,
        "walled_dns_port": net.walled_dns_port,
        "walled_dns_conf": WALLED_DNS_CONF,
        "walled_dns_unit": WALLED_DNS_UNIT,
        "walled_dns_cred": PurePosixPath(WALLED_DNS_CONF).name,
        "main_resolver": MAIN_RESOLVER,
        "lan_sysctl": _sysctl_conf_key("ipv6", net.lan_interface, "accept_ra"),
        "neigh_gc": neighbour_thresholds(dhcp.size),
        "nft_set_ref": f"{FAMILY}#{cfg.gateway.table}#{WALLED_DNS}",
        "wifi": wifi,
        "wifi_enabled": wifi.enabled,
        "ssid_line": ssid_line,
        "utf8_ssid": utf8,
        "nm_match": ";".join(f"interface-name:{i}" for i in unmanaged),
    }


def cert_managed(cfg: Config) -> bool:
    """The TLS portal follows the certificate from the collector ([sync] cert_zone, no pair of
    the file's own) through the gateway's live files: ``hotspot gateway dns-reload`` starts,
    restarts and stops it (gateway/dnsapply.py), never ``hotspot provision`` or the boot."""
    p = cfg.portal
    return bool(cfg.sync.cert_zone and cfg.dns_filter.conf_dir) and (
        not p.tls_cert or p.tls_cert == str(PurePosixPath(cfg.sync.cert_dir) / "cert.pem")
    )


def units(cfg: Config) -> tuple[str, ...]:
    """The village gateway's own units."""
    tls = cfg.portal.tls or cert_managed(cfg)
    return (
        WALLED_DNS_UNIT,
        "hotspot-gateway",
        "hotspot-portal",
        *(["hotspot-portal-tls"] if tls else []),
        "hotspot-sync",
        # The daily summary to the BUMDes head (issue #13.7): only when [summary] is on.
        *(["hotspot-summary"] if cfg.summary.enabled else []),
    )


def render_unit(name: str, cfg: Config, hotspot: str, header: str = HEADER) -> bytes:
    v = _values(cfg, hotspot, header)
    if name == "hotspot-portal-tls":
        v.update(portal_tls=True, portal_bind_cap=cfg.portal.https_port < 1024)
        name = "hotspot-portal"
    return _template(f"{name}.service.j2", **v)


def render(cfg: Config, source: bytes, *, hotspot: str) -> list[File]:
    """Every file of a village gateway, in the order they are installed."""
    v = _values(cfg, hotspot, HEADER)
    wifi = cfg.wifi
    own = units(cfg)

    def rendered(
        path: str, template: str, kind: str, *, mode: int = 0o644, restarts: tuple[str, ...] = ()
    ) -> File:
        """The file at ``path``: ``template`` filled with this configuration's values."""
        return File(path, _template(template, **v), mode, kind, restarts=restarts)

    files = [
        rendered(SYSUSERS, "sysusers.conf.j2", "sysusers"),
        rendered(TMPFILES, "tmpfiles.conf.j2", "tmpfiles"),
        # The collector's credentials live in it: root and the services' data group only
        # (the portal, the sync agent, the gateway).
        File(
            CONFIG_PATH,
            source,
            0o640,
            "config",
            group=DATA_GROUP,
            restarts=tuple(u for u in own if u != WALLED_DNS_UNIT),
        ),  # the walled resolver has a file of its own
        rendered(SYSCTL, "sysctl.conf.j2", "sysctl"),
        rendered(TIMESYNCD, "timesyncd.conf.j2", "timesyncd", restarts=("systemd-timesyncd",)),
        rendered(NETDEV, "lan.netdev.j2", "networkd"),
        rendered(NETWORK, "lan.network.j2", "networkd"),
    ]
    if v["lan_ports"]:
        files.append(rendered(PORTS_NETWORK, "lan-ports.network.j2", "networkd"))
    if cfg.management.enabled:
        files += [
            rendered(MGMT_NETDEV, "management.netdev.j2", "networkd"),
            rendered(MGMT_NETWORK, "management.network.j2", "networkd"),
        ]
        if cfg.management.wired_port:
            files.append(rendered(MGMT_PORT_NETWORK, "management-port.network.j2", "networkd"))
    files.append(rendered(NM_CONF, "networkmanager.conf.j2", "nm"))
    files.append(rendered(DNSMASQ, "dnsmasq.conf.j2", "dnsmasq", restarts=("dnsmasq",)))
    if cfg.management.enabled:
        files.append(
            rendered(MGMT_DNSMASQ, "dnsmasq-management.conf.j2", "dnsmasq", restarts=("dnsmasq",))
        )
    files.append(
        rendered(DNSMASQ_DROPIN, "dnsmasq-dropin.conf.j2", "dropin", restarts=("dnsmasq",))
    )
    files.append(
        rendered(WALLED_DNS_CONF, "walled-dns.conf.j2", "dnsmasq", restarts=(WALLED_DNS_UNIT,))
    )
    if wifi.enabled:
        files += [
            rendered(
                HOSTAPD,
                "hostapd.conf.j2",
                "hostapd",
                # The operator SSID's passphrase is in it: root only.
                mode=0o600 if cfg.management.ssid else 0o644,
                restarts=("hostapd",),
            ),
            rendered(HOSTAPD_DROPIN, "hostapd-dropin.conf.j2", "dropin", restarts=("hostapd",)),
        ]
    if cfg.dns_filter.conf_dir:
        for suffix in ("path", "service"):
            files.append(
                rendered(
                    f"{UNIT_DIR}/{DNS_RELOAD}.{suffix}",
                    f"{DNS_RELOAD}.{suffix}.j2",
                    "unit",
                    restarts=(f"{DNS_RELOAD}.path",) if suffix == "path" else (),
                )
            )
    for unit in own:
        files.append(
            File(
                f"{UNIT_DIR}/{unit}.service",
                render_unit(unit, cfg, hotspot),
                0o644,
                "unit",
                restarts=(unit,),
            )
        )
    return files


def services(cfg: Config) -> list[str]:
    """The services to enable and run, in start order. The sync agent only when it has
    somewhere to report to (``hotspot sync run`` refuses to start without sync.upstream_url):
    its unit is installed all the same, so setting the URL later is one more provision run."""
    wifi = ["hostapd"] if cfg.wifi.enabled else []
    return [
        "systemd-networkd",
        "systemd-timesyncd",
        *wifi,
        "dnsmasq",
        *(
            v
            for u in units(cfg)
            if (u != "hotspot-sync" or cfg.sync.enabled)
            and (u != "hotspot-portal-tls" or not cert_managed(cfg))
            # the resolvers' files from the policy, watched once both resolvers run
            for v in (
                [u, f"{DNS_RELOAD}.path"]
                if u == WALLED_DNS_UNIT and cfg.dns_filter.conf_dir
                else [u]
            )
        ),
    ]


def idle_units(cfg: Config) -> list[str]:
    """Our units installed but not to be running (stopped and disabled if they are)."""
    managed = cert_managed(cfg)
    return [
        u
        for u in units(cfg)
        if u not in services(cfg) and not (managed and u == "hotspot-portal-tls")
    ]


def write_reference(directory: str | os.PathLike[str]) -> list[Path]:
    """The reference units in systemd/ (defaults, /usr/local/bin/hotspot)."""
    data = copy.deepcopy(config_mod.DEFAULTS)
    # The TLS portal's unit as it is with a certificate configured.
    data["portal"].update(
        hostname="portal.example",
        tls_cert="/etc/hotspot/tls/cert.pem",
        tls_key="/etc/hotspot/tls/key.pem",
    )
    cfg = config_mod.validate(data)
    out = []
    for unit in ALL_UNITS:
        path = Path(directory) / f"{unit}.service"
        path.write_bytes(render_unit(unit, cfg, DEFAULT_ENTRY_POINT, REFERENCE_HEADER))
        out.append(path)
    return out


if __name__ == "__main__":  # pragma: no cover - maintenance helper
    import argparse

    parser = argparse.ArgumentParser(description="write the reference units")
    parser.add_argument("--reference", metavar="DIR", required=True)
    for written in write_reference(parser.parse_args().reference):
        print(written)
