"""The software version a gateway runs (issue #15, item 5): ``hotspot --version``, the health
record's ``software_version``, the field update's before-and-after.

``hotspot.__version__`` says which release; the revision says which build of it, so two
gateways that both say ``0.1.0`` but run different code can be told apart. The revision comes
from, in order:

1. the file ``hotspot/REVISION`` that a package build writes (``git rev-parse --short=12
   HEAD > hotspot/REVISION`` before building the wheel or the .deb: docs/provisioning.md), so
   an installed gateway, which has no Git checkout, still knows it;
2. the Git checkout the code runs from (a development machine, a gateway installed from a
   clone), with ``.dirty`` when it has uncommitted changes;
3. nothing: the version alone.

The result is a PEP 440 version with a local part: ``0.1.0+g08b7506a1c2e`` (the ``g`` says
Git, as ``git describe`` does).
"""

from __future__ import annotations

import functools
import logging
import re
import subprocess
from pathlib import Path

from hotspot import __version__

log = logging.getLogger(__name__)

PACKAGE = Path(__file__).parent
REVISION_FILE = PACKAGE / "REVISION"
# What a revision may look like (it travels in the health record: hotspot/wire.py).
_REVISION = re.compile(r"^[0-9A-Za-z._-]{1,40}$")
SOFTWARE_VERSION = re.compile(r"^[0-9A-Za-z.+_-]{1,64}$")


def _from_file() -> str | None:
    try:
        text = REVISION_FILE.read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        return None
    if _REVISION.match(text):
        return text
    log.warning("%s holds no revision: ignored", REVISION_FILE)
    return None


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(PACKAGE.parent), *args],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _from_git() -> str | None:
    if not (PACKAGE.parent / ".git").exists():  # a file in a worktree, a directory in a clone
        return None
    head = _git("rev-parse", "--short=12", "HEAD")
    if not head or not _REVISION.match(head):
        return None
    changed = _git("status", "--porcelain", "--untracked-files=no")
    return f"{head}.dirty" if changed else head


@functools.cache
def revision() -> str | None:
    """The build's revision, or None when it is not known."""
    return _from_file() or _from_git()


def software_version() -> str:
    """``0.1.0+g08b7506a1c2e``, or ``0.1.0`` when the revision is not known."""
    rev = revision()
    return f"{__version__}+g{rev}" if rev else __version__
