"""Errors that carry a stable code, so callers (CLI, portal, control socket) can react to them.

:class:`ErrorCode` is the one list of codes. Each code names the exception family a receiver
raises for it (the control client turns a reply's code back into that class) and what it
means. A code is never spelled as a string anywhere else: raise with ``code=ErrorCode.X``,
compare with ``exc.code is ErrorCode.X``, key message tables by the member.
(``tests/unit/test_errors.py`` greps the tree for spelled-out codes.)

How a code reaches people is decided where they are: the CLI exits 2 for the
:class:`UsageError` and :class:`ConfigError` families and 1 for the rest; the captive portal
keys its villager-facing page (and HTTP status) by the member (``portal.captive``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class ErrorCode(enum.StrEnum):
    """Every error code of the project. A StrEnum, so a member is its wire string: it goes
    into JSON as is, and prints as the code (``hotspot: blocked: ...``)."""

    # -- any request ---------------------------------------------------------------------------
    ERROR = "error"
    BAD_REQUEST = "bad-request"
    BAD_CONFIG = "bad-config"
    NOT_FOUND = "not-found"
    INTERNAL = "internal"
    DATABASE = "database"
    STORAGE_FULL = "storage-full"
    GATEWAY_UNAVAILABLE = "gateway-unavailable"
    ALREADY_RUNNING = "already-running"
    # -- the session engine --------------------------------------------------------------------
    UNKNOWN_DEVICE = "unknown-device"
    NO_SESSION = "no-session"
    NOT_BLOCKED = "not-blocked"
    NOT_TRUSTED = "not-trusted"
    BLOCKED = "blocked"
    QUOTA_EXHAUSTED = "quota-exhausted"
    EXPIRED = "expired"
    CONFLICT = "conflict"
    NOT_YOUR_SESSION = "not-your-session"
    # -- the kernel ----------------------------------------------------------------------------
    NFTABLES = "nftables"
    TC = "tc"
    CONNTRACK = "conntrack"
    NEIGHBOURS = "neighbours"
    NO_INTERFACE = "no-interface"
    SYSCTL = "sysctl"
    # -- vouchers and the operator console (in the portal's process) ---------------------------
    VOUCHER_UNKNOWN = "voucher-unknown"
    VOUCHER_USED = "voucher-used"
    VOUCHER_EXPIRED = "voucher-expired"
    VOUCHER_EXHAUSTED = "voucher-exhausted"
    VOUCHER_TIME_USED = "voucher-time-used"
    VOUCHER_TOPUP_MIXED = "voucher-topup-mixed"
    VOUCHER_VOID = "voucher-void"
    VOUCHER_SOLD = "voucher-sold"
    VOUCHER_UNSOLD = "voucher-unsold"
    OUT_OF_STOCK = "out-of-stock"
    VOUCHER_AGENT = "voucher-agent"
    RATE_LIMITED = "rate-limited"
    NO_KEY = "no-key"
    BAD_KEY = "bad-key"
    BAD_VOUCHER_KEY = "bad-voucher-key"
    BAD_PASSWORD = "bad-password"
    BAD_LOGIN = "bad-login"
    LOCKED = "locked"
    # -- RADIUS accounts (issue #16; in the portal's process) ----------------------------------
    RADIUS_REJECT = "radius-reject"
    RADIUS_UNAVAILABLE = "radius-unavailable"
    # -- other programs ------------------------------------------------------------------------
    EXISTS = "exists"
    SYNC = "sync"
    # -- the province's signed policy (issue #15; hotspot/policy.py) ---------------------------
    POLICY_SIGNATURE = "policy-signature"
    POLICY_REPLAY = "policy-replay"
    POLICY_INVALID = "policy-invalid"
    PROVISION = "provision"
    TESTBED = "testbed"

    @property
    def family(self) -> type[HotspotError]:
        """The exception class a receiver of this code raises."""
        return _SPECS[self].family

    @property
    def meaning(self) -> str:
        """What the code says; also the message of an error raised without one."""
        return _SPECS[self].meaning


class HotspotError(Exception):
    """Base of every error this project raises on purpose."""

    code: ErrorCode = ErrorCode.ERROR

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        # A subclass elsewhere may still spell its code; a code missing from the registry
        # fails at import, not when the error is raised.
        cls.code = ErrorCode(cls.__dict__.get("code", cls.code))

    def __init__(self, message: str = "", code: ErrorCode | None = None):
        super().__init__(message or (code or self.code).meaning)
        if code is not None:
            self.code = ErrorCode(code)  # a spelled-out code must be registered too

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else self.code.meaning


class ConfigError(HotspotError):
    """A configuration key has a bad value; ``key`` names it (e.g. ``network.lan_address``)."""

    code = ErrorCode.BAD_CONFIG

    def __init__(self, key: str, problem: str):
        super().__init__(f"{key}: {problem}")
        self.key = key


class UsageError(HotspotError):
    """A request or CLI argument is malformed; the message names the field."""

    code = ErrorCode.BAD_REQUEST


class NotFound(HotspotError):
    code = ErrorCode.NOT_FOUND


class Refused(HotspotError):
    """A well-formed request that will not be granted (blocked device, allowance used up...):
    always with the code that says why."""

    def __init__(self, message: str, code: ErrorCode):
        super().__init__(message, code=code)


class KernelError(HotspotError):
    """Applying state to the kernel failed; nothing was half-applied. The code names the part
    of the kernel that refused."""

    def __init__(self, message: str, code: ErrorCode):
        super().__init__(message, code=code)


class ControlUnavailable(HotspotError):
    """The gateway's control socket cannot be reached."""

    code = ErrorCode.GATEWAY_UNAVAILABLE


@dataclass(frozen=True)
class _Spec:
    family: type[HotspotError]
    meaning: str


_SPECS: dict[ErrorCode, _Spec] = {
    ErrorCode.ERROR: _Spec(
        HotspotError,
        "something went wrong (also: a code this program does not know, from a newer gateway)",
    ),
    ErrorCode.BAD_REQUEST: _Spec(
        UsageError, "the request or an argument is malformed; the message names the field"
    ),
    ErrorCode.BAD_CONFIG: _Spec(
        ConfigError, "a configuration value is invalid; the message names the key"
    ),
    ErrorCode.NOT_FOUND: _Spec(NotFound, "no such operator, package, batch, voucher or token"),
    ErrorCode.INTERNAL: _Spec(
        HotspotError,
        "a bug in the gateway; it is logged with its traceback and the connection keeps serving",
    ),
    ErrorCode.DATABASE: _Spec(HotspotError, "the gateway's database failed; nothing changed"),
    ErrorCode.STORAGE_FULL: _Spec(
        HotspotError,
        "the gateway's storage (the database's filesystem) is full; nothing changed, "
        "and it works again by itself once there is room",
    ),
    ErrorCode.GATEWAY_UNAVAILABLE: _Spec(
        ControlUnavailable, "the gateway's control socket cannot be reached or did not answer"
    ),
    ErrorCode.ALREADY_RUNNING: _Spec(
        HotspotError, "another gateway is already listening on the control socket"
    ),
    ErrorCode.UNKNOWN_DEVICE: _Spec(
        NotFound, "no device answers at that address, or the MAC has no address on the LAN"
    ),
    ErrorCode.NO_SESSION: _Spec(NotFound, "the device has no running session"),
    ErrorCode.NOT_BLOCKED: _Spec(NotFound, "the device is not blocked"),
    ErrorCode.NOT_TRUSTED: _Spec(NotFound, "the device is not on the trusted list"),
    ErrorCode.BLOCKED: _Spec(Refused, "the device is blocked"),
    ErrorCode.QUOTA_EXHAUSTED: _Spec(Refused, "today's allowance on that tier is used up"),
    ErrorCode.EXPIRED: _Spec(Refused, "the access asked for has already expired"),
    ErrorCode.CONFLICT: _Spec(Refused, "another authorization of this device is in progress"),
    ErrorCode.NOT_YOUR_SESSION: _Spec(
        Refused,
        "another device (another MAC) is using that address: a request by address alone "
        "does not change its session",
    ),
    ErrorCode.NFTABLES: _Spec(KernelError, "the nftables transaction failed"),
    ErrorCode.TC: _Spec(KernelError, "a traffic-control (HTB) change failed"),
    ErrorCode.CONNTRACK: _Spec(KernelError, "flushing a client's connections failed"),
    ErrorCode.NEIGHBOURS: _Spec(KernelError, "reading the neighbour (ARP) table failed"),
    ErrorCode.NO_INTERFACE: _Spec(KernelError, "a configured network interface does not exist"),
    ErrorCode.SYSCTL: _Spec(KernelError, "IPv4 forwarding cannot be enabled"),
    ErrorCode.VOUCHER_UNKNOWN: _Spec(Refused, "no such voucher code"),
    ErrorCode.VOUCHER_USED: _Spec(
        Refused, "the voucher is in use on other devices (or, for a sale, was used already)"
    ),
    ErrorCode.VOUCHER_EXPIRED: _Spec(
        Refused, "the voucher's time is over or it was not used in time"
    ),
    ErrorCode.VOUCHER_EXHAUSTED: _Spec(Refused, "the voucher's data is used up"),
    ErrorCode.VOUCHER_TIME_USED: _Spec(Refused, "the voucher's online time is used up"),
    ErrorCode.VOUCHER_TOPUP_MIXED: _Spec(
        Refused,
        "an hours voucher and an online-time voucher do not add up: the device runs the "
        "other kind (disconnect first to use this one on its own)",
    ),
    ErrorCode.VOUCHER_VOID: _Spec(Refused, "the voucher was withdrawn"),
    ErrorCode.VOUCHER_SOLD: _Spec(Refused, "the voucher was sold already"),
    ErrorCode.VOUCHER_UNSOLD: _Spec(Refused, "the voucher was not marked sold"),
    ErrorCode.OUT_OF_STOCK: _Spec(Refused, "no unsold voucher of this package is left"),
    ErrorCode.VOUCHER_AGENT: _Spec(
        Refused, "the voucher is in an agent's stock: the agent sells it"
    ),
    ErrorCode.RATE_LIMITED: _Spec(Refused, "too many wrong voucher codes from this device"),
    ErrorCode.NO_KEY: _Spec(HotspotError, "the voucher key file is missing"),
    ErrorCode.BAD_KEY: _Spec(HotspotError, "a key file is unreadable, not hex or too short"),
    ErrorCode.BAD_VOUCHER_KEY: _Spec(
        HotspotError, "the voucher key is not the one a batch was made with"
    ),
    ErrorCode.BAD_PASSWORD: _Spec(UsageError, "the password does not meet the rules"),
    ErrorCode.BAD_LOGIN: _Spec(Refused, "wrong operator name or password"),
    ErrorCode.LOCKED: _Spec(Refused, "too many wrong logins; try again later"),
    ErrorCode.RADIUS_REJECT: _Spec(Refused, "the RADIUS server refused the name or password"),
    ErrorCode.RADIUS_UNAVAILABLE: _Spec(
        HotspotError, "no RADIUS server answered (and no cached login may be used)"
    ),
    ErrorCode.EXISTS: _Spec(Refused, "the collector already has a gateway or token by that name"),
    ErrorCode.SYNC: _Spec(HotspotError, "reporting to the province failed"),
    ErrorCode.POLICY_SIGNATURE: _Spec(
        Refused,
        "a policy without a valid signature of the pinned key, or for another gateway: "
        "refused, the last good policy stays",
    ),
    ErrorCode.POLICY_REPLAY: _Spec(
        Refused, "a policy not newer than the one in force: refused, the last good one stays"
    ),
    ErrorCode.POLICY_INVALID: _Spec(
        Refused, "a policy whose content fails validation: refused, the last good one stays"
    ),
    ErrorCode.PROVISION: _Spec(HotspotError, "provisioning the device failed"),
    ErrorCode.TESTBED: _Spec(HotspotError, "the network-namespace test bed failed"),
}
