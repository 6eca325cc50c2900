"""Helpers for the CLI's tests: the configuration file a test's ``hotspot --config`` reads."""

from __future__ import annotations


def cli_config(tmp_path, cfg, packages: str) -> str:
    """Write ``hotspot.toml`` in ``tmp_path``: the test device's database (``cfg``'s), control
    socket and portal key files, then ``packages`` (TOML text, the [packages.*] tables).
    Returns its path."""
    path = tmp_path / "hotspot.toml"
    path.write_text(f'''
[database]
url = "{cfg.database.url}"
[control]
socket = "{tmp_path}/control.sock"
[portal]
voucher_key_file = "{tmp_path}/voucher.key"
secret_key_file = "{tmp_path}/portal.secret"
{packages}''')
    return str(path)
