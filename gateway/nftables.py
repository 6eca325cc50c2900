"""nftables adapter: libnftables' JSON API, in process (as firewalld does).

One :meth:`Nftables.apply` call is one netlink transaction: it all applies or none of it does.
Falls back to the ``nft -j -f -`` binary, which takes the same JSON, when the library cannot
be loaded.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import logging
import shutil
import subprocess
import threading
from collections.abc import Iterable
from typing import Any

from gateway import ruleset
from gateway.ruleset import Command, Layout
from hotspot.errors import ErrorCode, KernelError

log = logging.getLogger(__name__)

_OUTPUT_JSON = 1 << 4


class _Library:
    """A libnftables context with buffered output (not thread-safe: callers hold the lock)."""

    def __init__(self) -> None:
        name = ctypes.util.find_library("nftables") or "libnftables.so.1"
        lib = ctypes.CDLL(name)
        lib.nft_ctx_new.restype = ctypes.c_void_p
        lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
        lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
        lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        lib.nft_run_cmd_from_buffer.restype = ctypes.c_int
        for fn in ("nft_ctx_get_output_buffer", "nft_ctx_get_error_buffer"):
            getattr(lib, fn).restype = ctypes.c_char_p
            getattr(lib, fn).argtypes = [ctypes.c_void_p]
        for fn in ("nft_ctx_buffer_output", "nft_ctx_buffer_error"):
            getattr(lib, fn).argtypes = [ctypes.c_void_p]
        lib.nft_ctx_output_set_flags.argtypes = [ctypes.c_void_p, ctypes.c_uint]
        self.lib = lib
        self.ctx = lib.nft_ctx_new(0)
        if not self.ctx:
            raise OSError("nft_ctx_new failed")
        lib.nft_ctx_output_set_flags(self.ctx, _OUTPUT_JSON)
        lib.nft_ctx_buffer_output(self.ctx)
        lib.nft_ctx_buffer_error(self.ctx)

    def run(self, payload: bytes) -> tuple[int, str, str]:
        rc = self.lib.nft_run_cmd_from_buffer(self.ctx, payload)
        out = self.lib.nft_ctx_get_output_buffer(self.ctx) or b""
        err = self.lib.nft_ctx_get_error_buffer(self.ctx) or b""
        return rc, out.decode(), err.decode()

    def close(self) -> None:
        if self.ctx:
            self.lib.nft_ctx_free(self.ctx)
            self.ctx = None


class _Binary:
    def __init__(self) -> None:
        nft = shutil.which("nft")
        if nft is None:
            raise OSError("neither libnftables nor the nft binary is available")
        self.nft = nft

    def run(self, payload: bytes) -> tuple[int, str, str]:
        proc = subprocess.run(
            [self.nft, "-j", "-f", "-"], input=payload, capture_output=True, check=False, timeout=30
        )
        return proc.returncode, proc.stdout.decode(), proc.stderr.decode()

    def close(self) -> None:
        pass


class Nftables:
    """Runs JSON command batches and reads the gateway table's sets back."""

    def __init__(self, layout: Layout):
        self.layout = layout
        self._lock = threading.Lock()
        try:
            self._backend: _Library | _Binary = _Library()
        except OSError as exc:
            log.warning("libnftables unavailable (%s); using the nft binary", exc)
            self._backend = _Binary()
        # The tick's listing of the table (~20 ms of libnftables with a thousand clients)
        # runs on a context of its own: a login's transaction never waits for it.
        self._read_lock = threading.Lock()
        self._reader = _Library() if isinstance(self._backend, _Library) else self._backend

    def close(self) -> None:
        if self._reader is not self._backend:
            self._reader.close()
        self._backend.close()

    def _run(self, obj: Any, *, read: bool = False) -> dict[str, Any]:
        payload = json.dumps(obj).encode()
        backend, lock = (self._reader, self._read_lock) if read else (self._backend, self._lock)
        with lock:
            rc, out, err = backend.run(payload)
        if rc != 0:
            raise KernelError(f"nftables: {err.strip() or 'failed'}", code=ErrorCode.NFTABLES)
        return json.loads(out) if out.strip() else {}

    def apply(self, commands: Iterable[Command]) -> None:
        """Apply ``commands`` as one transaction (all or nothing)."""
        cmds = list(commands)
        if cmds:
            self._run({"nftables": cmds})

    def install(self, clients: Iterable[ruleset.Client] = (), blocked: Iterable[str] = ()) -> None:
        """Replace the table atomically, keeping dnsmasq's walled-garden entries."""
        try:
            walled_dns = parse_walled_dns(self.elements())
        except KernelError:  # no table yet
            walled_dns = []
        self.apply(ruleset.table_commands(self.layout, clients, blocked, walled_dns))

    def remove(self) -> None:
        self.apply(ruleset.delete_table_commands(self.layout))

    def elements(self) -> dict[str, list[Any]]:
        """Every set's and map's elements, by name, from one listing of the table."""
        data = self._run(
            {
                "nftables": [
                    {"list": {"table": {"family": ruleset.FAMILY, "name": self.layout.table}}}
                ]
            },
            read=True,
        )
        out: dict[str, list[Any]] = {}
        for item in data.get("nftables", []):
            for kind in ("set", "map"):
                if kind in item and item[kind].get("table") == self.layout.table:
                    out[item[kind]["name"]] = item[kind].get("elem", [])
        return out

    def set_elements(self, name: str) -> list[Any]:
        """The elements of one set of the table (a small listing, not the whole table)."""
        ref = {"family": ruleset.FAMILY, "table": self.layout.table, "name": name}
        data = self._run({"nftables": [{"list": {"set": ref}}]}, read=True)
        for item in data.get("nftables", []):
            if "set" in item and item["set"].get("name") == name:
                return list(item["set"].get("elem", []))
        return []


def parse_elements(
    raw: dict[str, list[Any]],
) -> tuple[set[tuple[str, str]], dict[str, str], dict[str, str], set[str]]:
    """(authorized (ip, mac) pairs, down map, up map, blocked MACs) from :meth:`elements`."""

    def _value(e: Any) -> Any:
        # Elements with counters or timeouts come wrapped as {"elem": {"val": ...}}.
        return e["elem"]["val"] if isinstance(e, dict) and "elem" in e else e

    authorized = set()
    for e in raw.get(ruleset.AUTHORIZED, []):
        ip, mac = _value(e)["concat"]
        authorized.add((ip, mac))
    maps = []
    for name in (ruleset.DOWN_CLASS, ruleset.UP_CLASS):
        maps.append({_value(k): v for k, v in raw.get(name, [])})
    blocked = {_value(e) for e in raw.get(ruleset.BLOCKED, [])}
    return authorized, maps[0], maps[1], blocked


def parse_walled_dns(raw: dict[str, list[Any]]) -> list[tuple[str, int]]:
    """(address, whole seconds left) of each entry dnsmasq put in the walled-garden set."""
    out = []
    for e in raw.get(ruleset.WALLED_DNS, []):
        if isinstance(e, dict) and "elem" in e:
            left = e["elem"].get("expires", e["elem"].get("timeout", ruleset.WALLED_DNS_TIMEOUT))
            out.append((e["elem"]["val"], int(left)))
        elif isinstance(e, str):
            out.append((e, ruleset.WALLED_DNS_TIMEOUT))
    return out
