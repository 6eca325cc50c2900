"""Secret key files: the voucher key (``[portal] voucher_key_file``) and the portal's cookie
secret — loaded, or created once, atomically."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from hotspot.errors import ErrorCode, HotspotError


def load_key(
    path: str | os.PathLike[str],
    create: bool = False,
    group: str | None = None,
    what: str = "voucher key",
) -> bytes:
    """A secret key file (32 random bytes, stored as hex): the voucher key, or the portal's
    cookie secret. ``create`` writes a new one if the file is missing — atomically, so
    workers starting together agree on one key."""
    p = Path(path)
    try:
        text = p.read_text().strip()
    except PermissionError:
        raise HotspotError(
            f"{what} {p} is not readable by this user", code=ErrorCode.BAD_KEY
        ) from None
    except FileNotFoundError:
        if not create:
            raise HotspotError(
                f"{what} {p} is missing (`hotspot portal run` creates it)", code=ErrorCode.NO_KEY
            ) from None
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(f".{p.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        if group:
            import grp

            try:
                os.chown(tmp, -1, grp.getgrnam(group).gr_gid)
            except (KeyError, PermissionError):
                pass
        try:
            os.link(tmp, p)  # fails if another process won the race: then use theirs
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
        # The new name on the disk before the key is used: a power cut that loses it would
        # make a new key at the next start, and every voucher printed with this one worthless.
        _fsync_folder(p.parent)
        text = p.read_text().strip()
    try:
        key = bytes.fromhex(text)
    except ValueError:
        raise HotspotError(f"{what} {p} is not hex", code=ErrorCode.BAD_KEY) from None
    if len(key) < 16:
        raise HotspotError(f"{what} {p} is too short", code=ErrorCode.BAD_KEY)
    return key


def _fsync_folder(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
