"""In-memory stand-ins for unit tests of pure logic (never for data-path tests)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import types

from gateway import shaping
from gateway.reconcile import Plan, Snapshot, Wanted
from gateway.tc import ClassReading


class FakeDataPath:
    """Holds the kernel state a real data path would, and applies plans to it."""

    def __init__(self, network: str = "10.10.0.0/22"):
        self.network = ipaddress.IPv4Network(network)
        self.state = Snapshot(pinned={})
        self.neighbours: dict[str, str] = {}
        self.portal_peers_at: dict[str, set[str]] = {}  # ip → MACs that talked to the portal
        self.portal_peer_ages: dict[tuple[str, str], float] = {}  # (ip, mac) → seconds
        self.frames: dict[tuple[str, int], tuple[int, int]] = {}  # (dir, minor) → bytes, packets
        self.applied: list[Plan] = []
        self.installs = 0
        self.snapshots: list[bool] = []  # each snapshot's login_state: whether it was whole
        self.counter_reads: list[set[int] | None] = []  # what each counters() asked for
        self.fail_next_apply: Exception | None = None
        # what the daemon reads of the real one's layout: the DNS filter's switch
        self.layout = types.SimpleNamespace(dns_filter=False)

    def set_dns_filter(self, enabled: bool) -> None:
        self.layout = types.SimpleNamespace(dns_filter=enabled)

    def close(self) -> None:
        pass

    def install(self, wanted: list[Wanted], blocked: set[str], pool=None) -> None:
        from gateway.reconcile import plan

        self.installs += 1
        self.state = Snapshot(
            down_ceil=dict(self.state.down_ceil),
            up_ceil=dict(self.state.up_ceil),
            pinned=dict(self.state.pinned or {}),
        )
        self.apply(plan(wanted, blocked, self.state, self.network, pool))

    def snapshot(self, with_nft: bool = True, readings=None, login_state=True) -> Snapshot:
        s = self.state
        self.snapshots.append(login_state)
        if not login_state:  # a tick's partial look: the classes only
            return Snapshot(
                down_ceil=dict(s.down_ceil), up_ceil=dict(s.up_ceil), login_sets_looked=False
            )
        return Snapshot(
            set(s.authorized),
            dict(s.down_map),
            dict(s.up_map),
            set(s.blocked),
            dict(s.down_ceil),
            dict(s.up_ceil),
            pinned=dict(s.pinned or {}),
        )

    def apply(self, plan: Plan):
        if self.fail_next_apply is not None:
            exc, self.fail_next_apply = self.fail_next_apply, None
            raise exc
        # The final readings of the classes it removes or releases (nothing points at them
        # any more: the real one reads them last).
        kept = {ip for entries in plan.add_map.values() for ip in entries}
        released = {*plan.down_del, *plan.up_del} | {
            shaping.client_minor(ip, self.network)
            for ips in plan.del_map.values()
            for ip in ips
            if ip not in kept
        }
        final = {m: FakeDataPath.class_counters(self, m) for m in released}
        s = self.state
        for c in plan.del_clients:
            s.authorized.discard((c.ip, c.mac))
        for name, ips in plan.del_map.items():
            for ip in ips:
                (s.down_map if name == "down_class" else s.up_map).pop(ip, None)
        for name, entries in plan.add_map.items():
            (s.down_map if name == "down_class" else s.up_map).update(entries)
        for c in plan.add_clients:
            s.authorized.add((c.ip, c.mac))
        s.blocked -= set(plan.del_blocked)
        s.blocked |= set(plan.add_blocked)
        for change in plan.down_set:
            s.down_ceil[change.minor] = change.kbps
            if change.new:
                self.frames[("down", change.minor)] = (0, 0)
        for change in plan.up_set:
            s.up_ceil[change.minor] = change.kbps
            if change.new:
                self.frames[("up", change.minor)] = (0, 0)
        for m in plan.down_del:
            s.down_ceil.pop(m, None)
        for m in plan.up_del:
            s.up_ceil.pop(m, None)
        pinned = s.pinned if s.pinned is not None else {}
        pinned.update(plan.add_pins)
        for ip in plan.del_pins:
            pinned.pop(ip, None)  # released: an ordinary entry, no longer a pin
        s.pinned = pinned
        self.applied.append(plan)
        return final

    def traffic(self, ip: str, down: int = 0, up: int = 0, packets: int = 1) -> None:
        """Pretend ``down``/``up`` IP-layer bytes passed the client's classes."""
        minor = shaping.client_minor(ip, self.network)
        for direction, n in (("down", down), ("up", up)):
            if n:
                b, p = self.frames.get((direction, minor), (0, 0))
                self.frames[(direction, minor)] = (
                    b + n + shaping.ETHERNET_HEADER * packets,
                    p + packets,
                )

    def counters(self, minors=None):
        """Every class's readings, or those of ``minors`` (that exist) only."""
        self.counter_reads.append(None if minors is None else set(minors))
        out = []
        for direction, ceil in (("down", self.state.down_ceil), ("up", self.state.up_ceil)):
            out.append(
                {
                    m: ClassReading(m, kbps, *self.frames.get((direction, m), (0, 0)))
                    for m, kbps in ceil.items()
                    if minors is None or m in minors
                }
            )
        return out[0], out[1]

    def class_counters(self, minor: int):
        out = []
        for direction, ceil in (("down", self.state.down_ceil), ("up", self.state.up_ceil)):
            kbps = ceil.get(minor)
            out.append(
                None
                if kbps is None
                else ClassReading(minor, kbps, *self.frames.get((direction, minor), (0, 0)))
            )
        return out[0], out[1]

    def mac_of(self, ip: str) -> str | None:
        return self.neighbours.get(ip)

    def macs_seen_at(self, ip: str) -> set[str]:
        return set(self.portal_peers_at.get(ip, ()))

    def ip_of(self, mac: str) -> str | None:
        return next((ip for ip, m in self.neighbours.items() if m == mac), None)

    def neighbour_table(self) -> dict[str, str]:
        return dict(self.neighbours)

    def portal_peers(self) -> dict[tuple[str, str], float]:
        """Heard just now, unless ``portal_peer_ages`` says how many seconds ago."""
        return {
            (ip, mac): self.portal_peer_ages.get((ip, mac), 0.0)
            for ip, macs in self.portal_peers_at.items()
            for mac in macs
        }


class Clock:
    """A frozen clock that tests move by hand (naive UTC, like the model)."""

    def __init__(self, start: dt.datetime = dt.datetime(2026, 11, 28, 3, 0, 0)):
        self.now = start
        self.ticks = 1000.0  # its monotonic clock, seconds

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        """Time passes: the wall clock and the monotonic one move together."""
        step = dt.timedelta(**kwargs)
        self.now += step
        self.ticks += step.total_seconds()

    def jump(self, **kwargs: float) -> None:
        """The wall clock is stepped (NTP, a power cut without RTC); no time passes."""
        self.now += dt.timedelta(**kwargs)

    def monotonic(self) -> float:
        return self.ticks
