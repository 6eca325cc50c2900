"""Hotspot Desa: the shared domain model, configuration and command line.

Nothing in this package imports a kernel adapter, so the unprivileged portal can use it.
"""

__version__ = "0.1.0"
