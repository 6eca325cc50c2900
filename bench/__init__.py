"""Benchmarks of Hotspot Desa (run as root): ``python3 -m bench.gateway``."""
