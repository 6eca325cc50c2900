"""MAC addresses: the one way a device's hardware address is read and written.

Everywhere inside the product (database, nftables, control socket) a MAC is lower-case,
colon-separated: ``aa:bb:cc:dd:ee:ff``. Anything a person or a tool hands us goes through
:func:`normalize_mac` first.
"""

from __future__ import annotations

import re

from hotspot.errors import UsageError

_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_SEPARATORS = re.compile(r"[0-9a-fA-F:.\-]")
_NOT_HEX = re.compile(r"[^0-9a-fA-F]")

# The second-lowest bit of the first octet: set when the address was made up locally (a
# phone's per-network "private" address) rather than assigned by the maker.
_LOCALLY_ADMINISTERED = 0x02
_MULTICAST = 0x01
_ZERO = "00:00:00:00:00:00"


def normalize_mac(value: str) -> str:
    """``AA-BB-CC-DD-EE-FF`` / ``aabb.ccdd.eeff`` / ``AA:BB:...`` → ``aa:bb:cc:dd:ee:ff``.

    Refuses (UsageError) anything that is not one usable unicast address."""
    if not isinstance(value, str):
        raise UsageError(f"not a MAC address: {value!r}")
    hexdigits = _NOT_HEX.sub("", value)
    if len(hexdigits) != 12 or len(_SEPARATORS.sub("", value)):
        raise UsageError(f"not a MAC address: {value!r}")
    mac = ":".join(hexdigits[i : i + 2] for i in range(0, 12, 2)).lower()
    if int(hexdigits[0:2], 16) & _MULTICAST:
        raise UsageError(f"not a unicast MAC address: {value!r}")
    if mac == "00:00:00:00:00:00":
        raise UsageError(f"not a usable MAC address: {value!r}")
    assert _MAC.match(mac)
    return mac


def is_device_mac(mac: str) -> bool:
    """``mac``, already in the canonical form (as the kernel's tables give it), is one
    device's: unicast and not zero. A cheap check for many addresses at once, where
    :func:`normalize_mac` would parse each again."""
    return bool(_MAC.match(mac)) and not int(mac[0:2], 16) & _MULTICAST and mac != _ZERO


def is_locally_administered(mac: str) -> bool:
    """A made-up address (MAC randomisation), not the maker's. False for a malformed one."""
    try:
        return bool(int(normalize_mac(mac)[0:2], 16) & _LOCALLY_ADMINISTERED)
    except UsageError:
        return False


def oui(mac: str) -> str | None:
    """The maker's prefix as six upper-case hex digits (``A45E60``), None for a malformed
    address."""
    try:
        return normalize_mac(mac).replace(":", "")[:6].upper()
    except UsageError:
        return None
