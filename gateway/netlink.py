"""The pieces of pyroute2 the gateway uses, imported without the package's ``__init__``.

``import pyroute2`` (or any ``from pyroute2… import``) first runs ``pyroute2/__init__.py``,
which imports every socket family the library knows — NDB, IPDB, IPVS, WireGuard, nl80211,
plan9, devlink…: about 200 modules and 6 MB of the daemon's memory for nothing it does
(issue #12, item 3; the table is in bench/README.md). Here the package is entered as a bare
package (its directory, no ``__init__`` run) and only the modules named below are loaded.

Whoever asks for the package by name later (``from pyroute2 import NDB``) still gets the
whole of it: the first attribute the bare package lacks runs the real ``__init__`` into it.
Every module of the gateway imports pyroute2's classes from here.
"""

from __future__ import annotations

import importlib.util
import sys
from typing import Any


def _bare_package(name: str) -> None:
    """Put ``name`` in ``sys.modules`` as its directory only, unless it is already loaded."""
    if name in sys.modules:
        return
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None or spec.submodule_search_locations is None:
        return  # not installed as a package: the imports below say so
    package = importlib.util.module_from_spec(spec)
    loaded = False

    def complete(attr: str) -> Any:
        """A submodule (``from pyroute2 import config``, as pyroute2's own modules write),
        or else the rest of the package, the first time something asks for it."""
        nonlocal loaded
        if attr.startswith("__"):
            raise AttributeError(attr)
        if importlib.util.find_spec(f"{name}.{attr}") is not None:
            return importlib.import_module(f"{name}.{attr}")
        if not loaded:
            loaded = True
            assert spec.loader is not None  # checked above
            spec.loader.exec_module(package)
            if attr in package.__dict__:
                return package.__dict__[attr]
        raise AttributeError(f"module {name!r} has no attribute {attr!r}")

    package.__getattr__ = complete  # type: ignore[method-assign]
    sys.modules[name] = package
    parent, _, child = name.rpartition(".")
    if parent:
        setattr(sys.modules[parent], child, package)


_bare_package("pyroute2")
# pyroute2's route socket imports ``unittest.mock`` for its mock socket (IPMock, which the
# gateway never uses): without this, the whole of ``unittest`` too — its runner, loader, case
# and suite modules, 1 MB. ``unittest.mock`` itself still loads.
_bare_package("unittest")

# Imported after the bare package is in place: only these modules (and what they import) load.
# (conntrack has its own small client, gateway/ctnetlink.py.)
from pyroute2.iproute.linux import IPRoute  # noqa: E402
from pyroute2.netlink.exceptions import NetlinkError  # noqa: E402

__all__ = ["IPRoute", "NetlinkError"]
