"""The Debian programs the demo village runs, and installing the missing ones with apt-get
(after saying so), so that the README's one command works on a fresh Debian or Ubuntu."""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import TextIO

# program -> the Debian package that ships it
TOOLS = {
    "ip": "iproute2",
    "nft": "nftables",
    "tc": "iproute2",
    "iperf3": "iperf3",
    "dnsmasq": "dnsmasq-base",
    "dhclient": "isc-dhcp-client",
}


class InstallFailed(Exception):
    pass


def missing_packages() -> list[str]:
    return sorted({pkg for tool, pkg in TOOLS.items() if shutil.which(tool) is None})


def install(packages: list[str], out: TextIO) -> None:
    """``apt-get install`` the packages, telling the person first; InstallFailed says why not."""
    apt = shutil.which("apt-get")
    if apt is None:
        raise InstallFailed(
            f"missing programs and no apt-get to install them; install {' '.join(packages)}"
        )
    print(
        f"hotspot demo: installing the Debian packages it needs: {' '.join(packages)} "
        "(apt-get; --no-install to refuse)",
        file=out,
        flush=True,
    )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for args in (
        [apt, "update", "-q"],
        [apt, "install", "-y", "-q", "--no-install-recommends", *packages],
    ):
        done = subprocess.run(
            args,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            tail = done.stdout.strip().splitlines()[-1:] or ["no output"]
            raise InstallFailed(f"{' '.join(args[1:3])} failed ({done.returncode}): {tail[0]}")
    still = missing_packages()
    if still:
        raise InstallFailed(f"still missing after apt-get: {' '.join(still)}")
