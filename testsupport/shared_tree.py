"""Run a command where an unprivileged user can read this checkout and its Python.

A process that drops to ``nobody`` must still import the project after the drop. When the
checkout or the virtualenv lives under a private directory (CI clones under ``/root``, mode
0700), it cannot, and a privilege-drop test would have to skip. Instead of opening the private
directory on the host, :func:`wrap_readable` runs the command in a private mount namespace in
which each private ancestor is covered by a world-traversable tmpfs and only the needed trees
are bound back at their own paths: the same paths, the real files, nothing else exposed, and
nothing left behind on the host when the command ends (the namespace dies with it).
"""

from __future__ import annotations

import os
import shlex
import stat
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _private_ancestor(path: Path) -> Path | None:
    """The topmost ancestor of ``path`` that others cannot traverse, if any."""
    for parent in reversed(path.parents):
        if parent != Path("/") and not os.stat(parent).st_mode & stat.S_IXOTH:
            return parent
    return None


def needed_trees() -> list[Path]:
    """The checkout, the running Python's prefix (a virtualenv's, when there is one) and the
    installation it was made from (pyenv keeps it under the home directory)."""
    trees = {REPO, Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve()}
    # A tree inside another needed tree comes back with it.
    return sorted(t for t in trees if not any(o != t and o in t.parents for o in trees))


def wrap_readable(command: list[str], keep_dir: Path) -> list[str]:
    """``command`` wrapped so that the needed trees are reachable by every user.

    ``keep_dir`` is an empty host directory (e.g. under /tmp) used to hold the trees while
    the private ancestors are covered. Without private ancestors the command is unchanged.
    """
    trees = needed_trees()
    covers = sorted({a for t in trees if (a := _private_ancestor(t)) is not None})
    if not covers:
        return command
    lines = ["set -e"]
    for i, tree in enumerate(trees):
        held = keep_dir / str(i)
        held.mkdir()
        lines.append(f"mount --bind {shlex.quote(str(tree))} {shlex.quote(str(held))}")
    for cover in covers:
        lines.append(f"mount -t tmpfs -o mode=0755,size=1m hotspot-cover {shlex.quote(str(cover))}")
    for i, tree in enumerate(trees):
        if any(c == tree or c in tree.parents for c in covers):
            quoted = shlex.quote(str(tree))
            lines.append(f"mkdir -p {quoted}")
            lines.append(f"mount --bind {shlex.quote(str(keep_dir / str(i)))} {quoted}")
    lines.append('exec "$@"')
    script = "\n".join(lines)
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", *command]
