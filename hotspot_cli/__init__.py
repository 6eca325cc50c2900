"""The ``hotspot`` command: the composition root, above every package (see main.py)."""
