"""ISC dhclient as a phone's DHCP client in a namespace (the netns tests and the demo).

It asks for DHCP option 114 (RFC 8910, the captive-portal API) by its code, as phones do
(Android 11+, iOS 14+). Instead of dhclient-script, which would rewrite the host's
resolv.conf, its script configures the interface and records what the server sent, nothing
else: ``<reason>.env`` in the lease directory, written last and renamed into place, so that
whoever sees :data:`BOUND` finds the address configured and the file whole.
"""

from __future__ import annotations

from pathlib import Path

BOUND = "BOUND.env"  # what the script records for the first lease

SCRIPT = """\
#!/bin/sh
case "$reason" in
PREINIT) ip link set dev "$interface" up ;;
BOUND|RENEW|REBIND|REBOOT)
    ip addr replace "$new_ip_address/$new_subnet_mask" dev "$interface"
    ip route replace default via "$new_routers" dev "$interface" ;;
esac
env | sort > "{out}/$reason.env.tmp" && mv "{out}/$reason.env.tmp" "{out}/$reason.env"
exit 0
"""


def command(
    lease_dir: Path, ifname: str, *, timeout: int, retry: int, once: bool = False
) -> list[str]:
    """Write dhclient.conf (its ``timeout`` and ``retry``, in seconds) and the script into
    ``lease_dir``; return the command line of dhclient in the foreground on ``ifname`` with
    them (``once``: it tries once, ``-1``)."""
    conf = lease_dir / "dhclient.conf"
    conf.write_text(
        "option rfc8910-captive-portal code 114 = text;\n"
        "request subnet-mask, broadcast-address, routers, domain-name-servers, "
        "rfc8910-captive-portal;\n"
        f"timeout {timeout};\n"
        f"retry {retry};\n"
    )
    script = lease_dir / "script"
    script.write_text(SCRIPT.format(out=lease_dir))
    script.chmod(0o755)
    return [
        "dhclient",
        "-d",
        *(["-1"] if once else []),
        "-v",
        "-cf",
        str(conf),
        "-sf",
        str(script),
        "-lf",
        str(lease_dir / "dhclient.leases"),
        "-pf",
        str(lease_dir / "dhclient.pid"),
        ifname,
    ]


def lease_env(path: Path) -> dict[str, str]:
    """What the script recorded (``new_ip_address``, ``new_rfc8910_captive_portal``, …)."""
    out = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out[key] = value.strip("'")
    return out
