"""The kernel data path: nftables + two HTB trees + conntrack + neighbours, behind one face.

The session engine speaks only in :class:`~gateway.reconcile.Plan` objects; this module turns
a plan into kernel changes in a fixed order so that no packet ever meets a half-made state:

1. create/change HTB classes (a map entry must never point at a missing class; the DHCP
   pool's classes exist from start-up, so a login on the pool's tier changes none),
   except the pool classes the plan releases (see step 5),
2. pin the neighbour entries of new sessions (before they are let out, so that a forged ARP
   reply cannot catch their first packets),
3. one nftables transaction for every set and map element (all or nothing),
4. conntrack entries of removed clients, and the walled (redirected) ones of new clients;
   then the removed clients' class-map entries (their last packets still meet their class),
5. unpin the neighbour entries of ended sessions, read their classes' final counters (nothing
   enters them any more) and remove the classes that are not the pool's; a pool class stays
   and only now goes back to the pool's rates (slowed while its session's download still
   flowed, it would fill its queue). What was queued in a class at its final reading still
   leaves it, and is counted, afterwards: the engine counts that to the ended session
   (``SessionEngine._draining``).

If step 2 or 3 fails, the pins step 2 made and the classes step 1 created are undone and
:class:`KernelError` is raised; the kernel is as it was.
"""

from __future__ import annotations

import dataclasses
import logging
import socket
from collections.abc import Callable, Collection
from pathlib import Path

from gateway import ruleset, shaping, tc
from gateway.conntrack import Conntrack
from gateway.neighbours import Neighbours
from gateway.netlink import IPRoute
from gateway.netlink_thread import OnOneThread
from gateway.nftables import Nftables
from gateway.reconcile import Plan, Pool, Snapshot, Wanted
from gateway.reconcile import plan as make_plan
from gateway.ruleset import Client, Layout
from gateway.tc import ClassReading, Shaper
from hotspot.config import Config
from hotspot.errors import ConfigError, ErrorCode, KernelError
from hotspot.mac import is_device_mac

log = logging.getLogger(__name__)


class DataPath:
    # (device, done, total) before each `tc -batch` run of a big class change: the daemon's
    # start reports it to systemd (a /18's first start takes minutes).
    class_progress: Callable[[str, int, int], None] | None = None

    def __init__(self, config: Config):
        self.config = config
        net = config.network
        self.network = net.lan_network
        self.layout = Layout.from_config(config)
        # One thread for every netlink call: pyroute2 leaks a socket per calling thread.
        self.ipr = OnOneThread(IPRoute)
        self.nft = Nftables(self.layout)
        leaf = config.gateway.leaf_qdisc
        self.down = Shaper(
            self.ipr,
            net.lan_interface,
            shaping.skeleton(net.uplink_down_kbps, net.lan_local_kbps),
            leaf,
        )
        self.up = Shaper(
            self.ipr, net.wan_interface, shaping.skeleton(net.uplink_up_kbps, None), leaf
        )
        self.conntrack = Conntrack()
        self.neighbours = Neighbours(self.ipr, net.lan_interface)

    # -- whole-table operations ------------------------------------------------------------

    def install(self, wanted: list[Wanted], blocked: set[str], pool: Pool | None = None) -> None:
        """Start-up: HTB trees present with a class for every address of the DHCP pool, the
        table replaced atomically with the database's clients already in it, then forwarding
        on; then the classes are reconciled (leaves included: a tree an older gateway left is
        brought to today's handles)."""
        if not shaping.shapeable(self.network):
            raise ConfigError(
                "network.lan_address",
                f"a /{self.network.prefixlen} LAN has more host addresses than "
                f"the shaper has qdisc handles for (a /18 at most: see "
                f"docs/architecture.md, Shaping)",
            )
        _refuse_router_adverts(self.config.network.lan_interface)
        # Before the table: every flow it redirects from now on is seen (older ones are
        # found by the index's first dumps).
        self.conntrack.watch_redirects(
            self.layout.gateway_ip,
            {
                self.layout.walled_dns_port: (socket.IPPROTO_UDP, socket.IPPROTO_TCP),
                self.layout.portal_port: (socket.IPPROTO_TCP,),
            },
        )
        self.conntrack.watch_clients(self.network)
        self.down.install()
        self.up.install()
        snap = self.snapshot(with_nft=False)
        # Classes first (nothing points at them yet), then the table in one transaction.
        class_plan = make_plan(wanted, blocked, snap, self.network, pool)
        # A start that fails part-way keeps the classes it made: they are the pool's, wanted
        # whatever happens next, and a /18's first start on a slow device must not begin
        # again from nothing at every restart (bench/README.md, "The /18").
        self._apply_classes(class_plan, undo=False)
        # After a reboot the neighbour table is empty: the pins come back with the table.
        self._apply_pins(class_plan)
        clients = [
            Client(w.ip, w.mac, shaping.classid_str(shaping.client_minor(w.ip, self.network)))
            for w in wanted
        ]
        try:
            self.nft.install(clients, blocked)
        except KernelError:
            self._undo_pins(class_plan)
            self._undo_new_classes(class_plan)
            raise
        # Only now: with forwarding on and no table, the kernel routes the LAN to the uplink
        # unfiltered (issue #11.1: at boot, until the gateway had started).
        _enable_forwarding()
        self._unpin(class_plan)
        self._delete_classes(class_plan)
        log.info(
            "data path installed: table inet %s, %d clients, %d blocked",
            self.layout.table,
            len(wanted),
            len(blocked),
        )

    def remove(self) -> None:
        self.nft.remove()
        for ip in self.neighbours.pinned(self.network):
            self.neighbours.unpin(ip)
        self.down.remove()
        self.up.remove()

    def set_walled_garden(self, addresses: tuple[str, ...], flush_dns: bool = False) -> None:
        """The static walled garden replaced in one nftables transaction (the policy)."""
        self.nft.apply(ruleset.walled_garden_commands(self.layout, addresses, flush_dns))
        self.layout = dataclasses.replace(self.layout, walled_garden=addresses)
        self.nft.layout = self.layout

    def set_dns_filter(self, enabled: bool) -> None:
        """DNS filtering on or off for logged-in devices (the policy), one transaction."""
        self.nft.apply(ruleset.dns_filter_commands(self.layout, enabled))
        self.layout = dataclasses.replace(self.layout, dns_filter=enabled)
        self.nft.layout = self.layout

    # -- state -----------------------------------------------------------------------------

    def snapshot(
        self,
        with_nft: bool = True,
        readings: tuple[dict[int, ClassReading], dict[int, ClassReading]] | None = None,
        login_state: bool = True,
    ) -> Snapshot:
        """The kernel's state; ``readings`` (from :meth:`counters` a moment ago) saves the
        class dumps.

        Without ``readings`` (start-up, an explicit reconcile) the client classes' leaf
        qdiscs are checked too, one more dump per device. A tick passes its readings and
        skips that: leaves go wrong only by an upgrade from an older gateway (which starts
        with a full look) or by hand. Without ``login_state`` (a tick's partial look) the
        login sets and the pins are not read either: only this gateway's own changes (each
        an operation's, applied at once) or a hand move them, and at 10,000 sessions their
        dumps were 56 + 32 ms of every tick (bench/README.md)."""
        snap = Snapshot(login_sets_looked=login_state)
        if login_state:
            snap.pinned = self.neighbours.pinned(self.network)
            if with_nft:
                snap.authorized, snap.down_map, snap.up_map, snap.blocked = self.nft.login_sets()
        check_leaves = readings is None
        down, up = readings if readings is not None else self.counters()
        snap.down_ceil = {m: r.ceil_kbps for m, r in down.items()}
        snap.up_ceil = {m: r.ceil_kbps for m, r in up.items()}
        if check_leaves:
            snap.down_stale_leaves = self.down.stale_leaves(down)
            snap.up_stale_leaves = self.up.stale_leaves(up)
        return snap

    def counters(
        self, minors: Collection[int] | None = None
    ) -> tuple[dict[int, ClassReading], dict[int, ClassReading]]:
        """(download, upload) readings by class minor: of every class (one dump per device),
        or of ``minors`` only (those that exist; asked for one by one when they are few)."""
        return self.down.readings(minors), self.up.readings(minors)

    def class_counters(self, minor: int) -> tuple[ClassReading | None, ClassReading | None]:
        """(download, upload) readings of one client's classes: one request per device (a
        session's final counters, read before its class goes or is taken over)."""
        return self.down.reading(minor), self.up.reading(minor)

    # -- applying plans --------------------------------------------------------------------

    def apply(self, plan: Plan) -> dict[int, tuple[ClassReading | None, ClassReading | None]]:
        """Make the kernel change; returns the final (download, upload) readings of the
        client classes it removed, read after their connections were forgotten and just
        before the classes went: nothing more passes them, so nothing they passed is lost."""
        if plan.empty:
            return {}
        # A removed client's class-map entries go only after its connections are forgotten:
        # until then its established download still flows, and without the entry it would
        # pass the unclassified class, uncounted (tens of milliseconds of a running transfer
        # at every kick). One more small transaction, only when a client goes.
        re_added = {name: set(entries) for name, entries in plan.add_map.items()}
        held = {
            name: [ip for ip in ips if ip not in re_added.get(name, set())]
            for name, ips in plan.del_map.items()
        }
        # The classes nothing points at any more: those that go, and the pool's that stay
        # for the next session at that address.
        released = {*plan.down_del, *plan.up_del}
        for ips in held.values():
            for ip in ips:
                try:
                    released.add(shaping.client_minor(ip, self.network))
                except ValueError:  # an entry someone put there by hand, not a client's
                    continue
        # A pool class goes back to the pool's rates only once nothing points at it: slowed
        # while its session's download still flows, it would fill its queue and drain it
        # for a second after the session's end (counted, but the session is over).
        back_to_pool = Plan(
            down_set=[c for c in plan.down_set if c.minor in released and not c.new],
            up_set=[c for c in plan.up_set if c.minor in released and not c.new],
        )
        first = Plan(
            down_set=[c for c in plan.down_set if c not in back_to_pool.down_set],
            up_set=[c for c in plan.up_set if c not in back_to_pool.up_set],
        )
        self._apply_classes(first)
        self._apply_pins(plan)
        try:
            self.nft.apply(self._nft_commands(plan, held))
        except KernelError:
            self._undo_pins(plan)
            self._undo_new_classes(plan)
            raise
        for ip in plan.flush_ips:
            self.conntrack.flush_client(ip)
        portal = (self.layout.gateway_ip, self.layout.portal_port)
        for client in plan.add_clients:
            # Its DNS flows were redirected to the walled resolver and its web connections to
            # the portal: its next lookup must reach the full resolver, its next page the web.
            self.conntrack.flush_walled(client.ip, portal)
        self._release_class_maps(held)
        self._unpin(plan)
        final = self._final_readings(sorted(released))
        self._delete_classes(plan)
        self._back_to_pool(back_to_pool)
        return final

    def _back_to_pool(self, plan: Plan) -> None:
        """The pool's rates for classes nothing points at. A failure is logged: the next
        tick's reconcile puts them right (the next login at the address does anyway)."""
        if plan.empty:
            return
        try:
            self._apply_classes(plan)
        except KernelError as exc:
            log.warning("pool classes back to the pool's rates: %s", exc)

    def _final_readings(
        self, minors: list[int]
    ) -> dict[int, tuple[ClassReading | None, ClassReading | None]]:
        """Asked for by class for a few (a login, a kick), one dump per device for many (a
        large reconcile). A failed read is logged: the class goes anyway."""
        if not minors:
            return {}
        try:
            down, up = self.counters(set(minors))
            return {m: (down.get(m), up.get(m)) for m in minors}
        except KernelError as exc:
            log.warning("final class counters: %s", exc)
            return {}

    def _release_class_maps(self, held: dict[str, list[str]]) -> None:
        """Delete the class-map entries held back for removed clients. A failure is logged:
        the next tick's reconcile removes what is left."""
        cmds: list[ruleset.Command] = []
        for name, ips in held.items():
            cmds += ruleset.element_command(self.layout, "delete", name, ips)
        if not cmds:
            return
        try:
            self.nft.apply(cmds)
        except KernelError as exc:
            log.warning("%s", exc)

    def _nft_commands(
        self, plan: Plan, held: dict[str, list[str]] | None = None
    ) -> list[ruleset.Command]:
        """The plan's one transaction, less the map deletions ``held`` back."""
        lay = self.layout
        cmds = ruleset.element_command(
            lay,
            "delete",
            ruleset.AUTHORIZED,
            [ruleset.authorized_elem(c.ip, c.mac) for c in plan.del_clients],
        )
        for name, ips in plan.del_map.items():
            later = set((held or {}).get(name, ()))
            cmds += ruleset.element_command(
                lay, "delete", name, [ip for ip in ips if ip not in later]
            )
        cmds += ruleset.element_command(lay, "delete", ruleset.BLOCKED, plan.del_blocked)
        for name, entries in plan.add_map.items():
            cmds += ruleset.element_command(
                lay, "add", name, [[ip, cid] for ip, cid in entries.items()]
            )
        cmds += ruleset.element_command(
            lay,
            "add",
            ruleset.AUTHORIZED,
            [ruleset.authorized_elem(c.ip, c.mac) for c in plan.add_clients],
        )
        cmds += ruleset.element_command(lay, "add", ruleset.BLOCKED, plan.add_blocked)
        return cmds

    def _apply_classes(self, plan: Plan, *, undo: bool = True) -> None:
        try:
            for shaper, changes in ((self.down, plan.down_set), (self.up, plan.up_set)):
                shaper.apply_bulk(
                    [(c.minor, c.kbps, c.needs_leaf) for c in changes],
                    [],
                    self._progress_on(shaper),
                )
        except KernelError:
            if undo:
                self._undo_new_classes(plan)
            raise

    def _progress_on(self, shaper: Shaper) -> tc.BatchProgress | None:
        report = self.class_progress
        if report is None:
            return None
        ifname = shaper.ifname
        return lambda done, total: report(ifname, done, total)

    def _apply_pins(self, plan: Plan) -> None:
        done: list[str] = []
        try:
            for ip, mac in plan.add_pins.items():
                self.neighbours.pin(ip, mac)
                done.append(ip)
        except KernelError:
            self._undo_pins(plan, done)
            self._undo_new_classes(plan)
            raise

    def _undo_pins(self, plan: Plan, done: list[str] | None = None) -> None:
        """Put back what the pins of ``plan`` replaced: the pin of the session the plan ends
        at that address (an address taken over), else no entry at all."""
        before = {c.ip: c.mac for c in plan.del_clients}
        for ip in plan.add_pins if done is None else done:
            try:
                if ip in before:
                    self.neighbours.pin(ip, before[ip])
                else:
                    self.neighbours.unpin(ip)
            except KernelError as exc:
                log.warning("rollback: %s", exc)

    def _unpin(self, plan: Plan) -> None:
        # The session is over whatever happens here; a pin left behind is removed by the
        # next tick's reconcile.
        for ip, mac in plan.del_pins.items():
            try:
                self.neighbours.release(ip, mac)
            except KernelError as exc:
                log.warning("%s", exc)

    def _undo_new_classes(self, plan: Plan) -> None:
        for shaper, changes in ((self.down, plan.down_set), (self.up, plan.up_set)):
            try:
                shaper.apply_bulk([], [c.minor for c in changes if c.new])
            except KernelError as exc:
                log.warning("rollback: %s", exc)

    def _delete_classes(self, plan: Plan) -> None:
        self.down.apply_bulk([], plan.down_del)
        self.up.apply_bulk([], plan.up_del)

    # -- identity --------------------------------------------------------------------------

    def mac_of(self, ip: str) -> str | None:
        return self.neighbours.mac_of(ip)

    def ip_of(self, mac: str) -> str | None:
        return self.neighbours.ip_of(mac)

    def neighbour_table(self) -> dict[str, str]:
        """ip → mac of every usable neighbour on the LAN: one neighbour dump."""
        return self.neighbours.table()

    def portal_peers(self) -> dict[tuple[str, str], float]:
        """(ip, mac) → seconds since its last frame reached the portal's ports, for every
        device heard there within ``ruleset.PEERS_TIMEOUT`` (each packet refreshes the
        element's timeout): one dump of the set (gateway/nftnetlink.py)."""
        peers: dict[tuple[str, str], float] = {}
        for at, mac, timeout_ms, left_ms in self.nft.peers(ruleset.PORTAL_PEERS):
            if not is_device_mac(mac):
                continue  # a forged source (multicast, zero): no device to resume
            timeout = ruleset.PEERS_TIMEOUT * 1000 if timeout_ms is None else timeout_ms
            age = 0.0 if left_ms is None else (timeout - left_ms) / 1000
            peers[(at, mac)] = max(0.0, age)
        return peers

    def macs_seen_at(self, ip: str) -> set[str]:
        """The MACs whose frames reached the portal from ``ip`` lately (``portal_peers``):
        the live view of who is at an address, which the pinned neighbour entry is not.

        Read at every login by address, so only ``ip``'s elements are decoded (a power
        cut's crowd is hundreds of peers). A forged source MAC counts: it is another
        sender at that address."""
        return {mac for _at, mac, _t, _left in self.nft.peers(ruleset.PORTAL_PEERS, at=ip)}

    def close(self) -> None:
        self.conntrack.close()
        self.neighbours.close()
        self.nft.close()
        self.ipr.close()


def _enable_forwarding() -> None:
    path = Path("/proc/sys/net/ipv4/ip_forward")
    try:
        if path.read_text().strip() != "1":
            path.write_text("1\n")
            log.info("enabled IPv4 forwarding")
    except OSError as exc:
        raise KernelError(f"cannot enable IPv4 forwarding: {exc}", code=ErrorCode.SYSCTL) from exc


def _refuse_router_adverts(lan: str) -> None:
    """accept_ra=0 on the LAN: a phone must not become the gateway's IPv6 router. The table
    drops adverts from the LAN anyway and provisioning's sysctl file sets this at boot; this
    covers a gateway installed by hand. A kernel without IPv6, or a sandbox that keeps the
    file read-only, leaves it to those two."""
    path = Path("/proc/sys/net/ipv6/conf", lan, "accept_ra")
    try:
        if path.read_text().strip() != "0":
            path.write_text("0\n")
            log.info("router advertisements on %s refused (accept_ra=0)", lan)
    except FileNotFoundError:
        return
    except OSError as exc:
        log.warning("cannot set accept_ra=0 on %s: %s (the table drops adverts)", lan, exc)
