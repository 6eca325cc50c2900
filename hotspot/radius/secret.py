"""The RADIUS shared secret: read from its own file, never from the TOML."""

from __future__ import annotations

import os
import stat

from hotspot.errors import ConfigError

MAX_SECRET = 128  # RFC 2865 sets no limit; FreeRADIUS and RouterOS take far less


def read_secret(path: str, key: str = "radius.secret_file") -> bytes:
    """The secret in ``path`` (one line; surrounding white space dropped). The file must be
    readable by its owner and group only: the secret lets anyone forge accounting records
    and disconnect villagers."""
    try:
        info = os.stat(path)
        with open(path, "rb") as fh:
            raw = fh.read(MAX_SECRET + 2)
    except FileNotFoundError:
        raise ConfigError(key, f"file not found: {path}") from None
    except PermissionError:
        raise ConfigError(key, f"permission denied: {path}") from None
    if info.st_mode & stat.S_IROTH or info.st_mode & stat.S_IWOTH:
        raise ConfigError(key, f"{path} must not be readable by others (chmod 0640 or 0600)")
    secret = raw.strip()
    if not secret:
        raise ConfigError(key, f"{path} is empty")
    if len(secret) > MAX_SECRET or b"\n" in secret:
        raise ConfigError(key, f"{path} must hold one line of at most {MAX_SECRET} bytes")
    return secret
