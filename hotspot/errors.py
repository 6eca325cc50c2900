"""Errors that carry a stable code, so callers (CLI, portal, control socket) can react to them."""

from __future__ import annotations


class HotspotError(Exception):
    """Base of every error this project raises on purpose."""

    code = "error"

    def __init__(self, message: str, code: str | None = None):
        super().__init__(message)
        if code is not None:
            self.code = code

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else self.code


class ConfigError(HotspotError):
    """A configuration key has a bad value; ``key`` names it (e.g. ``network.lan_address``)."""

    code = "bad-config"

    def __init__(self, key: str, problem: str):
        super().__init__(f"{key}: {problem}")
        self.key = key


class UsageError(HotspotError):
    """A request or CLI argument is malformed."""

    code = "bad-request"


class NotFound(HotspotError):
    code = "not-found"


class Refused(HotspotError):
    """A well-formed request the gateway will not grant (blocked device, allowance used up...)."""

    code = "refused"


class KernelError(HotspotError):
    """Applying state to the kernel failed; nothing was half-applied."""

    code = "kernel"


class ControlUnavailable(HotspotError):
    """The gateway's control socket cannot be reached."""

    code = "gateway-unavailable"
