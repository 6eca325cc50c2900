"""Pure reconciliation: desired state (the database) against actual state (the kernel).

Set arithmetic only, so running it twice is the same as running it once, and a plan for an
already reconciled kernel is empty.

The desired HTB classes are those of the running sessions (at their rates) *and* one for
every address of the DHCP pool (the :class:`Pool`, at the pool's rates, with its leaf): a
login then finds its class already there, and a session's end puts its class back to the
pool's rates instead of removing it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection
from dataclasses import dataclass, field

from gateway import shaping
from gateway.ruleset import Client
from hotspot.config import Config

# The tier whose rates the pool's classes have between sessions (when the configuration has
# it; else the first tier): most logins are on it, and then a login changes no class at all.
POOL_TIER = "free"


@dataclass(frozen=True)
class Wanted:
    """One client the database says must be online."""

    ip: str
    mac: str
    down_kbps: int
    up_kbps: int


@dataclass(frozen=True)
class Pool:
    """The client classes that exist whether or not anybody is logged in: host indexes
    ``first``..``last`` (the DHCP range) at ``down_kbps``/``up_kbps``."""

    first: int
    last: int
    down_kbps: int
    up_kbps: int

    @property
    def minors(self) -> range:
        return range(self.first, self.last + 1)

    def __contains__(self, minor: object) -> bool:
        return isinstance(minor, int) and self.first <= minor <= self.last

    def only(self, minors: set[int]) -> dict[int, tuple[int, int]]:
        """minor → (down, up) pool rates of those of ``minors`` in the pool."""
        return {m: (self.down_kbps, self.up_kbps) for m in minors if m in self}

    @classmethod
    def from_range(
        cls, start: str, end: str, network: ipaddress.IPv4Network, down_kbps: int, up_kbps: int
    ) -> Pool:
        return cls(
            shaping.client_minor(start, network),
            shaping.client_minor(end, network),
            down_kbps,
            up_kbps,
        )


def pool_of(config: Config) -> Pool:
    """The configuration's DHCP range, at the rates of :data:`POOL_TIER`."""
    tiers = config.tiers
    tier = tiers.get(POOL_TIER) or next(iter(tiers.values()))
    return Pool.from_range(
        str(config.dhcp.range_start),
        str(config.dhcp.range_end),
        config.network.lan_network,
        tier.down_kbps,
        tier.up_kbps,
    )


@dataclass
class Snapshot:
    """What the kernel holds now."""

    authorized: set[tuple[str, str]] = field(default_factory=set)
    down_map: dict[str, str] = field(default_factory=dict)
    up_map: dict[str, str] = field(default_factory=dict)
    blocked: set[str] = field(default_factory=set)
    down_ceil: dict[int, int] = field(default_factory=dict)  # minor → kbps
    up_ceil: dict[int, int] = field(default_factory=dict)
    # Client classes whose leaf qdiscs are not the ones we make (an older gateway's
    # handles, a leaf removed by hand); empty when the leaves were not looked at.
    down_stale_leaves: set[int] = field(default_factory=set)
    up_stale_leaves: set[int] = field(default_factory=set)
    # ip → mac of the pinned (PERMANENT) neighbour entries of client addresses on the LAN;
    # None when they were not looked at (then a plan leaves the pins alone).
    pinned: dict[str, str] | None = None
    # Whether the login sets (authorized, the class maps, blocked) were read; when not (a
    # tick's partial look, which reads its sessions' classes only) a plan leaves them alone.
    login_sets_looked: bool = True


@dataclass
class ClassChange:
    minor: int
    kbps: int
    new: bool  # the class does not exist yet (a rollback removes it again)
    remake_leaf: bool = False  # the class exists, its leaf qdiscs must be made anew

    @property
    def needs_leaf(self) -> bool:
        return self.new or self.remake_leaf


@dataclass
class Plan:
    add_clients: list[Client] = field(default_factory=list)
    del_clients: list[Client] = field(default_factory=list)  # elements to delete
    add_map: dict[str, dict[str, str]] = field(default_factory=dict)  # map → ip → classid
    del_map: dict[str, list[str]] = field(default_factory=dict)  # map → ips
    add_blocked: list[str] = field(default_factory=list)
    del_blocked: list[str] = field(default_factory=list)
    down_set: list[ClassChange] = field(default_factory=list)
    up_set: list[ClassChange] = field(default_factory=list)
    down_del: list[int] = field(default_factory=list)
    up_del: list[int] = field(default_factory=list)
    flush_ips: list[str] = field(default_factory=list)
    add_pins: dict[str, str] = field(default_factory=dict)  # ip → mac, made or replaced
    # ip → the pinned MAC: released to an ordinary (STALE) entry, not deleted (see
    # gateway/neighbours.py, ``release``)
    del_pins: dict[str, str] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not any(
            (
                self.add_clients,
                self.del_clients,
                self.add_blocked,
                self.del_blocked,
                self.down_set,
                self.up_set,
                self.down_del,
                self.up_del,
                any(self.add_map.values()),
                any(self.del_map.values()),
                self.add_pins,
                self.del_pins,
            )
        )

    def summary(self) -> str:
        text = (
            f"+{len(self.add_clients)}/-{len(self.del_clients)} clients, "
            f"+{len(self.add_blocked)}/-{len(self.del_blocked)} blocked, "
            f"{len(self.down_set) + len(self.up_set)} classes set, "
            f"{len(self.down_del) + len(self.up_del)} removed"
        )
        if self.add_pins or self.del_pins:
            text += f", +{len(self.add_pins)}/-{len(self.del_pins)} pinned neighbours"
        return text


def _class_changes(
    want: dict[int, int], have: dict[int, int], stale_leaves: set[int]
) -> tuple[list[ClassChange], list[int]]:
    # Only the differences are sorted: the tick plans 10,000 sessions and a /18's 16,000 pool
    # classes every 2 s, and sorting every class was most of the plan's time.
    changes = []
    for minor, kbps in want.items():
        new = minor not in have
        remake_leaf = not new and minor in stale_leaves
        if new or remake_leaf or have[minor] != kbps:
            changes.append(ClassChange(minor, kbps, new, remake_leaf))
    changes.sort(key=lambda change: change.minor)
    stale = sorted(have.keys() - want.keys())
    return changes, stale


# Per LAN: a client address → its class minor and class id. ``shaping.client_minor`` checks
# the address and is cached too, but its cache hashes the network on every call (Python code
# in ipaddress), which cost more than the rest of a plan's look at an unchanged session.
_CLASSES: dict[ipaddress.IPv4Network, dict[str, tuple[int, str]]] = {}


def _classes_of(wanted: list[Wanted], network: ipaddress.IPv4Network) -> dict[str, tuple[int, str]]:
    """ip → (minor, classid) of every wanted session; a bad address raises ValueError."""
    known = _CLASSES.setdefault(network, {})
    out = {}
    for w in wanted:
        got = known.get(w.ip)
        if got is None:
            minor = shaping.client_minor(w.ip, network)
            # Bounded by the LAN's host addresses; a new LAN (a test's) starts its own.
            got = known[w.ip] = (minor, shaping.classid_str(minor))
        out[w.ip] = got
    return out


def _plan_login_sets(
    p: Plan,
    want_pairs: set[tuple[str, str]],
    want_map: dict[str, str],
    blocked: set[str],
    snap: Snapshot,
) -> None:
    """The login sets' part of a plan: who is let through, to which class, who is blocked."""
    for ip, mac in sorted(want_pairs - snap.authorized):
        p.add_clients.append(Client(ip=ip, mac=mac, classid=want_map[ip]))
    stale_pairs = snap.authorized - want_pairs
    for ip, mac in sorted(stale_pairs):
        p.del_clients.append(Client(ip=ip, mac=mac, classid=""))
    # An address whose owner changed keeps its connections' entries otherwise.
    p.flush_ips = sorted({ip for ip, _ in stale_pairs})

    for name, have in (("down_class", snap.down_map), ("up_class", snap.up_map)):
        p.del_map[name] = sorted(ip for ip, cid in have.items() if want_map.get(ip) != cid)
        p.add_map[name] = dict(
            sorted((ip, cid) for ip, cid in want_map.items() if have.get(ip) != cid)
        )

    p.add_blocked = sorted(blocked - snap.blocked)
    p.del_blocked = sorted(snap.blocked - blocked)


def plan(
    wanted: list[Wanted],
    blocked: set[str],
    snap: Snapshot,
    network: ipaddress.IPv4Network,
    pool: Pool | dict[int, tuple[int, int]] | None = None,
    looked: Collection[int] | None = None,
) -> Plan:
    """``pool``: the pool classes that must exist (minor → (down, up) kbps) besides the
    sessions' — all of them (a :class:`Pool`), or only those a change touches (a dict).
    ``looked``: the classes ``snap`` holds when the kernel's were read only in part (a
    tick's look at its sessions' classes): the plan changes no other class, and leaves
    the rest to a whole look. Every list of the plan is sorted (its order is the order of
    the kernel's changes)."""
    p = Plan()
    classes = _classes_of(wanted, network)
    want_pairs = {(w.ip, w.mac) for w in wanted}
    want_map = {ip: classid for ip, (_, classid) in classes.items()}

    if snap.login_sets_looked:
        _plan_login_sets(p, want_pairs, want_map, blocked, snap)

    if snap.pinned is not None:
        # A running session's address is pinned to its MAC; any other pin on a client
        # address goes (a session that ended or moved while nobody was looking).
        want_pins = {w.ip: w.mac for w in wanted}
        pinned = snap.pinned
        p.add_pins = dict(
            sorted((ip, mac) for ip, mac in want_pins.items() if pinned.get(ip) != mac)
        )
        p.del_pins = {ip: pinned[ip] for ip in sorted(pinned.keys() - want_pins.keys())}

    want_down: dict[int, int] = {}
    want_up: dict[int, int] = {}
    if isinstance(pool, Pool):
        want_down = dict.fromkeys(pool.minors, pool.down_kbps)
        want_up = dict.fromkeys(pool.minors, pool.up_kbps)
    elif pool:
        want_down = {m: rates[0] for m, rates in pool.items()}
        want_up = {m: rates[1] for m, rates in pool.items()}
    for w in wanted:
        minor = classes[w.ip][0]
        want_down[minor] = w.down_kbps
        want_up[minor] = w.up_kbps
    have_down, have_up = snap.down_ceil, snap.up_ceil
    if looked is not None:
        want_down = {m: kbps for m, kbps in want_down.items() if m in looked}
        want_up = {m: kbps for m, kbps in want_up.items() if m in looked}
        have_down = {m: kbps for m, kbps in have_down.items() if m in looked}
        have_up = {m: kbps for m, kbps in have_up.items() if m in looked}
    p.down_set, p.down_del = _class_changes(want_down, have_down, snap.down_stale_leaves)
    p.up_set, p.up_del = _class_changes(want_up, have_up, snap.up_stale_leaves)
    return p
