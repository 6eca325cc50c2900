"""nftables adapter: libnftables' JSON API, in process (as firewalld does), and for the
element changes of a login or a kick a batch of our own (gateway/nftnetlink.py).

One :meth:`Nftables.apply` call is one netlink transaction: it all applies or none of it does.
A transaction of nothing but elements of the gateway's login sets goes as one nf_tables batch
without libnftables' cache fetch; anything else (the table, the walled garden, timeouts) goes
through libnftables. Falls back to the ``nft -j -f -`` binary, which takes the same JSON, when
the library cannot be loaded.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import json
import logging
import shutil
import subprocess
import threading
from collections.abc import Iterable
from typing import Any

from gateway import ruleset
from gateway.nftnetlink import LoginSets, MalformedElement, NftNetlink, Peer
from gateway.ruleset import Command, Layout
from hotspot.errors import ErrorCode, KernelError
from hotspot.memory import malloc_trim

log = logging.getLogger(__name__)

_OUTPUT_JSON = 1 << 4
# A big libnftables call leaves memory behind (bench/README.md, "Memory at 10,000
# sessions"). A listing of the whole table keeps libnftables' cache of it (every set, every
# element) in the context that listed it until that context's next command: 21 MB of the C
# heap at 10,000 clients, held between ticks. And what a big call freed (its JSON, its
# parse) stays in glibc's heap as free bytes until a trim: 34 MB after the start-up's
# table of 10,000 clients, ~15 MB after each listing. So after a call whose JSON (in or
# out) is at least this long (~2,400 clients; a /22's thousand are 116 kB), a reading
# context is freed and a new one made, and the heap trimmed: 27 + 3 ms at 10,000 clients,
# and yet a listing's CPU with them was 1.02x what it was (bench.memory nft).
BIG_CALL_BYTES = 256 * 1024
_TRIM = malloc_trim()


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

    def renew(self) -> None:
        """This context freed (and the cache it holds) and a fresh one in its place; if
        none can be made, the old one stays (OSError)."""
        fresh = _Library()
        self.close()
        self.lib, self.ctx = fresh.lib, fresh.ctx
        fresh.ctx = None


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
        # Element batches without libnftables' cache (None once the kernel disagreed).
        self.netlink: NftNetlink | None = NftNetlink()
        # The tick's listing of the table (~20 ms of libnftables with a thousand clients)
        # runs on a context of its own: a login's transaction never waits for it.
        self._read_lock = threading.Lock()
        self._reader = _Library() if isinstance(self._backend, _Library) else self._backend
        # ... and its look at the login sets on a netlink socket of its own, for the same
        # reason: a login's batch (self.netlink) never waits for the tick's four dumps.
        self.look = NftNetlink()

    def close(self) -> None:
        if self.netlink is not None:
            self.netlink.close()
        self.look.close()
        if self._reader is not self._backend:
            self._reader.close()
        self._backend.close()

    def _run(self, obj: Any, *, read: bool = False) -> dict[str, Any]:
        payload = json.dumps(obj).encode()
        backend, lock = (self._reader, self._read_lock) if read else (self._backend, self._lock)
        with lock:
            rc, out, err = backend.run(payload)
            if len(payload) >= BIG_CALL_BYTES or len(out) >= BIG_CALL_BYTES:
                self._after_big_call(backend)
        if rc != 0:
            raise KernelError(f"nftables: {err.strip() or 'failed'}", code=ErrorCode.NFTABLES)
        return json.loads(out) if out.strip() else {}

    def _after_big_call(self, backend: _Library | _Binary) -> None:
        """Give back what a big call left (see BIG_CALL_BYTES); the caller holds the lock
        of ``backend``. The transactions' context keeps its cache: it is small (the sets
        without their elements) and a login's fallback would fetch it again."""
        if isinstance(backend, _Library) and backend is self._reader is not self._backend:
            try:
                backend.renew()
            except OSError as exc:  # the old context stays, and its cache: memory, not harm
                log.warning("libnftables: no fresh reading context (%s); keeping the old", exc)
        if _TRIM is not None:
            _TRIM(0)

    def apply(self, commands: Iterable[Command]) -> None:
        """Apply ``commands`` as one transaction (all or nothing)."""
        cmds = list(commands)
        if cmds and not self._apply_batch(cmds):
            self._run({"nftables": cmds})

    def _apply_batch(self, cmds: list[Command]) -> bool:
        """``cmds`` as one nf_tables batch of our own, if they are all element changes of the
        login sets; False when libnftables is to do them. A malformed element is refused
        here, before anything reaches the kernel."""
        if self.netlink is None:
            return False
        try:
            return self.netlink.apply(cmds)
        except MalformedElement as exc:
            raise KernelError(f"nftables: {exc}", code=ErrorCode.NFTABLES) from None
        except OSError as exc:
            refused = exc
        # The kernel refused the batch whole (nothing of it applied): libnftables tries the
        # same. If it is refused there too, the change itself is wrong (an element already
        # gone, a missing set) and libnftables' message says why; if libnftables applies
        # it, this kernel and our encoding disagree: libnftables from now on.
        self._run({"nftables": cmds})
        log.warning(
            "nf_tables batch refused (%s) but libnftables applied it: libnftables from now on",
            refused,
        )
        if self.netlink is not None:
            self.netlink.close()
            self.netlink = None
        return True

    def peers(self, name: str, at: str | None = None) -> list[Peer]:
        """(address, MAC, timeout ms, time left ms) of each element of an ``ipv4_addr .
        ether_addr`` set with timeouts (with ``at``, of that address's only): one netlink
        dump (libnftables' listing, with its cache fetch, when the batch client is off or
        the dump failed)."""
        if self.netlink is not None:
            try:
                return self.netlink.set_elements(ruleset.FAMILY, self.layout.table, name, at)
            except OSError as exc:
                log.warning("nf_tables: listing %s: %s; through libnftables", name, exc)
        peers: list[Peer] = []
        for e in self.set_elements(name):
            elem = e["elem"] if isinstance(e, dict) and "elem" in e else {"val": e}
            address, mac = elem["val"]["concat"]
            if at is not None and address != at:
                continue
            expires = elem.get("expires")
            timeout = elem.get("timeout")
            peers.append(
                (
                    address,
                    str(mac).lower(),
                    None if timeout is None else int(timeout) * 1000,
                    None if expires is None else int(expires) * 1000,
                )
            )
        return peers

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

    def login_sets(self) -> LoginSets:
        """(authorized (ip, mac) pairs, down map, up map, blocked MACs): the tick's look at
        the login sets. Four netlink dumps read with ``struct`` (gateway/nftnetlink.py), one
        generation of the ruleset; through libnftables' listing of the whole table when the
        dumps failed. At 10,000 clients the listing and its JSON
        took 0.2–0.4 s of a tick (bench/README.md, "The tick at 10,000 sessions")."""
        try:
            return self.look.login_sets(ruleset.FAMILY, self.layout.table)
        except OSError as exc:
            if exc.errno != errno.ENOENT:  # no table: libnftables says so in its words
                log.warning("nf_tables: reading the login sets: %s; through libnftables", exc)
        return parse_elements(self.elements())

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
