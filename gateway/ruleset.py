"""Pure builder of the gateway's nftables table, as libnftables JSON commands.

Everything the data path decides per packet is a set or map lookup, never a per-client rule:

* ``authorized``    ipv4_addr . ether_addr: a client is let out only from the address it
                    was authorized at, with its own MAC (a neighbour cannot borrow a login).
* ``down_class``    ipv4_addr : classid — ``meta priority set`` picks the client's HTB class
* ``up_class``      on the LAN (download) and on the WAN (upload). Set in the forward hook,
                    because ip_forward() resets skb->priority before it.
* ``blocked``       ether_addr: never forwarded, whatever else says.
* ``walled_garden`` static addresses/networks from the config, reachable before login on
                    the web's ports only (``WALLED_SERVICES``);
  ``walled_garden_dns`` the same filled by dnsmasq's ``nftset=`` (elements time out).
* ``portal_flood``  a meter: new connections per second per unauthorized client to the portal.
* ``dns_flood``     a meter: DNS packets per second per unauthorized client.

Before login a device's DNS, to whatever address, is redirected to the walled resolver (a
second dnsmasq on ``walled_dns_port`` that answers only the portal's name, the captive probes
and the walled garden); blocked devices resolve nothing; LAN-to-LAN forwarding and IPv6 to the
gateway (but neighbour discovery) are dropped; from the uplink only replies and the configured
``wan_tcp_ports`` come in. docs/security.md, "The data path", has the why of each.
* ``portal_peers``  ipv4_addr . ether_addr: who talked to the portal from which address in
                    the last ``PEERS_TIMEOUT`` seconds (refreshed by every packet). The engine
                    acts on a session for a portal request only if no other MAC is in it for
                    the address (docs/security.md).
* ``portal_conns``  a meter: open connections per client to the portal ports (``ct count``),
                    walled or logged in: one phone cannot hold every portal thread.
* ``dns_filtered``  the LAN while DNS filtering is on (the policy's switch), empty while it is
                    off: a logged-in device's DNS to any other resolver is redirected to the
                    gateway's, DoT (853) refused, HTTPS/QUIC to ``doh_addresses`` refused
                    (hotspot/dnsfilter.py; docs/security.md, "DNS filtering"). Switched by
                    its elements, in one transaction: the rules never change.

Nothing here touches the kernel; :mod:`gateway.nftables` applies the commands in one transaction.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from hotspot.config import Config
from hotspot.dnsfilter import DOH_ADDRESSES as DOH_IPS

Command = dict[str, Any]

FAMILY = "inet"
WALLED_DNS_TIMEOUT = 3600
FLOOD_TIMEOUT = 60
PEERS_TIMEOUT = 30

AUTHORIZED = "authorized"
BLOCKED = "blocked"
DOWN_CLASS = "down_class"
UP_CLASS = "up_class"
WALLED = "walled_garden"
WALLED_DNS = "walled_garden_dns"
FLOOD = "portal_flood"
DNS_FLOOD = "dns_flood"
PORTAL_PEERS = "portal_peers"
CONNS = "portal_conns"
DNS_FILTERED = "dns_filtered"
DOH_ADDRESSES = "doh_addresses"
DOT_PORT = 853
LAN_TCP_PORTS = "lan_tcp_ports"
WAN_TCP_PORTS = "wan_tcp_ports"
DNS_PORT = 53
# What a walled-garden address may be reached on before login: web pages (HTTP, HTTPS, QUIC).
# A name's address may be a CDN's, shared with every other site it hosts: nothing but the web.
WALLED_SERVICES = (("tcp", 80), ("tcp", 443), ("udp", 443))
# ICMPv6 the gateway takes from the LAN: neighbour discovery of its link-local address only
# (no router advertisements, no MLD, no echo). The uplink's own IPv6 also needs adverts.
LAN_ND_TYPES = ("nd-neighbor-solicit", "nd-neighbor-advert")
WAN_ND_TYPES = ("nd-neighbor-solicit", "nd-neighbor-advert", "nd-router-advert")


# -- expression helpers -------------------------------------------------------------------


def _meta(key: str) -> dict[str, Any]:
    return {"meta": {"key": key}}


def _payload(protocol: str, field: str) -> dict[str, Any]:
    return {"payload": {"protocol": protocol, "field": field}}


def _match(left: Any, right: Any, op: str = "==") -> dict[str, Any]:
    return {"match": {"op": op, "left": left, "right": right}}


def _ct_state(*states: str) -> dict[str, Any]:
    return _match({"ct": {"key": "state"}}, list(states) if len(states) > 1 else states[0], "in")


_CLIENT_ID = {"concat": [_payload("ip", "saddr"), _payload("ether", "saddr")]}
_ACCEPT = {"accept": None}
_DROP = {"drop": None}
_RETURN = {"return": None}
_COUNTER = {"counter": None}
_REJECT_ICMPX = {"reject": {"type": "icmpx", "expr": "admin-prohibited"}}


def _prefix(net: str) -> Any:
    network = ipaddress.IPv4Network(net)
    if network.prefixlen == 32:
        return str(network.network_address)
    return {"prefix": {"addr": str(network.network_address), "len": network.prefixlen}}


@dataclass(frozen=True)
class Layout:
    """The names and addresses the ruleset is built from."""

    table: str
    lan: str
    wan: str
    gateway_ip: str
    lan_network: str
    portal_port: int
    portal_ports: tuple[int, ...]  # the HTTP port, and the HTTPS port when TLS is configured
    portal_conn_rate: int
    portal_conn_limit: int
    lan_tcp_ports: tuple[int, ...]
    walled_garden: tuple[str, ...]
    walled_dns_port: int = 5300
    walled_dns_rate: int = 20
    wan_tcp_ports: tuple[int, ...] = ()
    # RADIUS CoA/Disconnect-Requests (docs/radius.md): from these servers to this UDP port.
    coa_servers: tuple[str, ...] = ()
    coa_port: int = 0
    dns_filter: bool = False  # [dns_filter] enabled (the policy's switch)
    doh_addresses: tuple[str, ...] = ()

    @classmethod
    def from_config(cls, config: Config) -> Layout:
        net = config.network
        ports = [net.portal_port]
        portal = config.portal
        # With [sync] cert_zone the TLS portal comes and goes with the certificate while the
        # gateway runs (gateway/dnsapply.py): its port is open from the start (nothing
        # listening = a reset, as for any closed port).
        if (portal.tls_cert or config.sync.cert_zone) and portal.https_port not in ports:
            ports.append(portal.https_port)
        return cls(
            table=config.gateway.table,
            lan=net.lan_interface,
            wan=net.wan_interface,
            gateway_ip=str(net.gateway_ip),
            lan_network=str(net.lan_network),
            portal_port=net.portal_port,
            portal_ports=tuple(ports),
            portal_conn_rate=net.portal_conn_rate,
            portal_conn_limit=net.portal_conn_limit,
            lan_tcp_ports=net.lan_tcp_ports,
            walled_garden=net.walled_garden,
            walled_dns_port=net.walled_dns_port,
            walled_dns_rate=net.walled_dns_rate,
            wan_tcp_ports=net.wan_tcp_ports,
            coa_servers=(
                tuple(sorted({s.host for s in config.radius.servers}))
                if config.radius.enabled and config.radius.coa_port
                else ()
            ),
            coa_port=config.radius.coa_port,
            dns_filter=config.dns_filter.enabled,
            doh_addresses=DOH_IPS if config.dns_filter.refuse_doh_addresses else (),
        )

    def ref(self, **obj: Any) -> dict[str, Any]:
        return {"family": FAMILY, "table": self.table, **obj}


@dataclass(frozen=True)
class Client:
    """A client as the data path sees it."""

    ip: str
    mac: str
    classid: str  # "1:2a", the same minor on both devices


# -- elements -----------------------------------------------------------------------------


def authorized_elem(ip: str, mac: str) -> dict[str, Any]:
    return {"concat": [ip, mac]}


def element_command(layout: Layout, verb: str, name: str, elem: list[Any]) -> list[Command]:
    """``add``/``delete`` of elements of one set or map (nothing for no elements)."""
    return [{verb: {"element": layout.ref(name=name, elem=elem)}}] if elem else []


def client_commands(layout: Layout, verb: str, clients: Iterable[Client]) -> list[Command]:
    """A client's three elements: its (ip, mac) pair and its two classid map entries."""
    clients = list(clients)
    cmds = element_command(
        layout, verb, AUTHORIZED, [authorized_elem(c.ip, c.mac) for c in clients]
    )
    for name in (DOWN_CLASS, UP_CLASS):
        elem = [[c.ip, c.classid] for c in clients] if verb == "add" else [c.ip for c in clients]
        cmds += element_command(layout, verb, name, elem)
    return cmds


def walled_garden_commands(
    layout: Layout, addresses: Iterable[str], flush_dns: bool = False
) -> list[Command]:
    """Replace the static walled garden with ``addresses`` (the province's policy), and with
    ``flush_dns`` empty the set dnsmasq fills by name (its domains changed: what a removed
    domain resolved to must not stay open; the others refill at their next lookup). One
    transaction: a phone never meets a half-changed garden."""
    cmds: list[Command] = [{"flush": {"set": layout.ref(name=WALLED)}}]
    elem = [_prefix(n) for n in addresses]
    if elem:
        cmds.append({"add": {"element": layout.ref(name=WALLED, elem=elem)}})
    if flush_dns:
        cmds.append({"flush": {"set": layout.ref(name=WALLED_DNS)}})
    return cmds


def dns_filter_commands(layout: Layout, enabled: bool) -> list[Command]:
    """DNS filtering on or off for every logged-in device, in one transaction."""
    cmds: list[Command] = [{"flush": {"set": layout.ref(name=DNS_FILTERED)}}]
    if enabled:
        cmds.append(
            {"add": {"element": layout.ref(name=DNS_FILTERED, elem=[_prefix(layout.lan_network)])}}
        )
    return cmds


# -- the table ----------------------------------------------------------------------------


def _sets(layout: Layout) -> list[Command]:
    sets: list[dict[str, Any]] = [
        layout.ref(name=AUTHORIZED, type=["ipv4_addr", "ether_addr"]),
        layout.ref(name=BLOCKED, type="ether_addr"),
        layout.ref(name=WALLED, type="ipv4_addr", flags=["interval"]),
        layout.ref(
            name=WALLED_DNS, type="ipv4_addr", flags=["timeout"], timeout=WALLED_DNS_TIMEOUT
        ),
        layout.ref(
            name=FLOOD, type="ipv4_addr", size=65535, flags=["timeout"], timeout=FLOOD_TIMEOUT
        ),
        layout.ref(
            name=DNS_FLOOD, type="ipv4_addr", size=65535, flags=["timeout"], timeout=FLOOD_TIMEOUT
        ),
        layout.ref(name=LAN_TCP_PORTS, type="inet_service"),
        layout.ref(name=WAN_TCP_PORTS, type="inet_service"),
        layout.ref(
            name=PORTAL_PEERS,
            type=["ipv4_addr", "ether_addr"],
            size=65535,
            flags=["timeout"],
            timeout=PEERS_TIMEOUT,
        ),
        # ct count elements go when their last connection does: no timeout needed.
        layout.ref(name=CONNS, type="ipv4_addr", size=65535),
        layout.ref(name=DNS_FILTERED, type="ipv4_addr", flags=["interval"]),
        layout.ref(name=DOH_ADDRESSES, type="ipv4_addr"),
    ]
    cmds: list[Command] = [{"add": {"set": s}} for s in sets]
    for name in (DOWN_CLASS, UP_CLASS):
        cmds.append({"add": {"map": layout.ref(name=name, type="ipv4_addr", map="classid")}})
    if layout.walled_garden:
        cmds.append(
            {
                "add": {
                    "element": layout.ref(
                        name=WALLED, elem=[_prefix(n) for n in layout.walled_garden]
                    )
                }
            }
        )
    if layout.dns_filter:
        cmds += dns_filter_commands(layout, True)[1:]
    if layout.doh_addresses:
        cmds.append(
            {"add": {"element": layout.ref(name=DOH_ADDRESSES, elem=list(layout.doh_addresses))}}
        )
    for name, ports in (
        (LAN_TCP_PORTS, layout.lan_tcp_ports),
        (WAN_TCP_PORTS, layout.wan_tcp_ports),
    ):
        if ports:
            cmds.append({"add": {"element": layout.ref(name=name, elem=list(ports))}})
    return cmds


def _any_of(values: Iterable[Any]) -> Any:
    values = list(values)
    return values[0] if len(values) == 1 else {"set": values}


def _l4(*protos: str) -> dict[str, Any]:
    return _match(_meta("l4proto"), _any_of(protos))


def _dport(port: Any) -> dict[str, Any]:
    """The destination port of TCP or UDP (``th dport``; pair it with :func:`_l4`)."""
    return _match(_payload("th", "dport"), port)


def _meter(name: str, rate: int) -> dict[str, Any]:
    """Over ``rate`` per second (burst twice that) for one source address of the set."""
    return {
        "set": {
            "op": "add",
            "elem": _payload("ip", "saddr"),
            "set": "@" + name,
            "stmt": [{"limit": {"rate": rate, "burst": 2 * rate, "per": "second", "inv": True}}],
        }
    }


def _chains(
    layout: Layout,
) -> dict[str, tuple[dict[str, Any] | None, list[list[dict[str, Any]]]]]:
    """chain name → (base-chain hook or None, rules); each rule is a list of expressions."""
    lan_in = _match(_meta("iifname"), layout.lan)
    wan_in = _match(_meta("iifname"), layout.wan)
    lan_out = _match(_meta("oifname"), layout.lan)
    wan_out = _match(_meta("oifname"), layout.wan)

    def tcp(port: Any) -> dict[str, Any]:
        return _match(_payload("tcp", "dport"), port)

    def icmpv6(types: Iterable[str]) -> list[dict[str, Any]]:
        return [_match(_payload("icmpv6", "type"), {"set": list(types)})]

    def hook(kind: str, name: str, prio: int) -> dict[str, Any]:
        return {"type": kind, "hook": name, "prio": prio, "policy": "accept"}

    portal = tcp(_any_of(layout.portal_ports))
    walled = [
        _match(_payload("ip", "daddr"), "@" + WALLED),
        _match(_payload("ip", "daddr"), "@" + WALLED_DNS),
    ]
    web = _match(
        {"concat": [_meta("l4proto"), _payload("th", "dport")]},
        {"set": [{"concat": [proto, port]} for proto, port in WALLED_SERVICES]},
    )
    dns = [_l4("tcp", "udp"), _dport(DNS_PORT)]
    walled_dns = [_l4("tcp", "udp"), _dport(layout.walled_dns_port)]
    not_authorized = _match(_CLIENT_ID, "@" + AUTHORIZED, "!=")
    filtered = _match(_payload("ip", "saddr"), "@" + DNS_FILTERED)
    return {
        # Before login every plain-HTTP connection lands on the portal, whatever its address.
        "prerouting": (
            hook("nat", "prerouting", -100),
            [
                # http://<gateway>/ is the portal for everyone, logged in or not (status page).
                [
                    lan_in,
                    _match(_payload("ip", "daddr"), layout.gateway_ip),
                    _match(_meta("l4proto"), "tcp"),
                    tcp(80),
                    {"redirect": {"port": layout.portal_port}},
                ],
                [lan_in, {"jump": {"target": "captive_nat"}}],
            ],
        ),
        "captive_nat": (
            None,
            [
                # DNS filtering: a logged-in device's DNS to another resolver is answered by
                # the gateway's (which holds the blocklist), whatever address it asked.
                [
                    filtered,
                    _match(_CLIENT_ID, "@" + AUTHORIZED),
                    _match(_payload("ip", "daddr"), layout.gateway_ip, "!="),
                    *dns,
                    _COUNTER,
                    {"redirect": {"port": DNS_PORT}},
                ],
                [_match(_CLIENT_ID, "@" + AUTHORIZED), _RETURN],
                # Every DNS query of a device not logged in, to whatever address (a phone with a
                # hard-coded resolver too), goes to the walled resolver: no name of its choosing
                # ever reaches upstream, so DNS is no tunnel. Before the walled garden: a resolver
                # in the garden is not a way round it.
                [*dns, {"redirect": {"port": layout.walled_dns_port}}],
                [walled[0], _RETURN],
                [walled[1], _RETURN],
                [
                    _match(_meta("l4proto"), "tcp"),
                    tcp(80),
                    {"redirect": {"port": layout.portal_port}},
                ],
            ],
        ),
        "postrouting": (
            hook("nat", "postrouting", 100),
            [
                [
                    _match(_payload("ip", "saddr"), _prefix(layout.lan_network)),
                    wan_out,
                    {"masquerade": None},
                ],
            ],
        ),
        "forward": (
            hook("filter", "forward", 0),
            [
                [lan_in, {"jump": {"target": "from_lan"}}],
                [lan_out, {"jump": {"target": "to_lan"}}],
            ],
        ),
        "from_lan": (
            None,
            [
                [_match(_payload("ether", "saddr"), "@" + BLOCKED), _COUNTER, _DROP],
                [_match(_meta("nfproto"), "ipv6"), _COUNTER, _DROP],
                # Phone to phone through the gateway would undo the access points' client
                # isolation (a host route via 10.10.0.1 is all it takes).
                [lan_out, _COUNTER, _DROP],
                # DNS filtering: DNS over TLS (and QUIC) and HTTPS to the well-known DoH
                # resolvers are refused at once (a phone then falls back to plain DNS, which
                # the gateway answers).
                [
                    filtered,
                    _l4("tcp"),
                    _dport(DOT_PORT),
                    _COUNTER,
                    {"reject": {"type": "tcp reset"}},
                ],
                [filtered, _l4("udp"), _dport(DOT_PORT), _COUNTER, _REJECT_ICMPX],
                [
                    filtered,
                    _match(_payload("ip", "daddr"), "@" + DOH_ADDRESSES),
                    _l4("tcp"),
                    _dport(443),
                    _COUNTER,
                    {"reject": {"type": "tcp reset"}},
                ],
                [
                    filtered,
                    _match(_payload("ip", "daddr"), "@" + DOH_ADDRESSES),
                    _l4("udp"),
                    _dport(443),
                    _COUNTER,
                    _REJECT_ICMPX,
                ],
                [_match(_CLIENT_ID, "@" + AUTHORIZED), {"jump": {"target": "client_up"}}],
                [walled[0], web, _ACCEPT],
                # Use keeps a name-based entry alive: dnsmasq re-adding it does not.
                [
                    walled[1],
                    web,
                    {
                        "set": {
                            "op": "update",
                            "elem": _payload("ip", "daddr"),
                            "set": "@" + WALLED_DNS,
                        }
                    },
                    _ACCEPT,
                ],
                # Refuse rather than drop: phones give up on HTTPS and QUIC at once and fall
                # back to the plain-HTTP probe that shows the portal.
                [_match(_meta("l4proto"), "tcp"), _COUNTER, {"reject": {"type": "tcp reset"}}],
                [_COUNTER, {"reject": {"type": "icmpx", "expr": "admin-prohibited"}}],
            ],
        ),
        "client_up": (
            None,
            [
                [
                    {
                        "mangle": {
                            "key": _meta("priority"),
                            "value": {
                                "map": {"key": _payload("ip", "saddr"), "data": "@" + UP_CLASS}
                            },
                        }
                    }
                ],
                [_ACCEPT],
            ],
        ),
        "to_lan": (
            None,
            [
                [
                    _ct_state("established", "related"),
                    {
                        "mangle": {
                            "key": _meta("priority"),
                            "value": {
                                "map": {"key": _payload("ip", "daddr"), "data": "@" + DOWN_CLASS}
                            },
                        }
                    },
                ],
                [_ct_state("established", "related"), _ACCEPT],
                [_COUNTER, _DROP],
            ],
        ),
        "input": (
            hook("filter", "input", 0),
            [
                [lan_in, {"jump": {"target": "lan_input"}}],
                [wan_in, {"jump": {"target": "wan_input"}}],
            ],
        ),
        "lan_input": (
            None,
            [
                # Every packet to the portal says which MAC is behind the address now.
                [
                    _match(_meta("nfproto"), "ipv4"),
                    portal,
                    {"set": {"op": "update", "elem": _CLIENT_ID, "set": "@" + PORTAL_PEERS}},
                ],
                # IPv6: neighbour discovery of the gateway's link-local address and nothing
                # else: no service of the gateway answers there, and no router advert is taken.
                [*icmpv6(LAN_ND_TYPES), _ACCEPT],
                [_match(_meta("nfproto"), "ipv6"), _COUNTER, _DROP],
                # DNS before established flows: NAT picks a flow's resolver at its first packet
                # only, so a flow begun while logged in would still reach the full resolver
                # after logout.
                [
                    _match(_payload("ether", "saddr"), "@" + BLOCKED),
                    _l4("tcp", "udp"),
                    _dport({"set": [DNS_PORT, layout.walled_dns_port]}),
                    _COUNTER,
                    _DROP,
                ],
                [*dns, not_authorized, _COUNTER, _DROP],
                [*walled_dns, _meter(DNS_FLOOD, layout.walled_dns_rate), _COUNTER, _DROP],
                [_l4("tcp", "udp"), _dport({"set": [DNS_PORT, layout.walled_dns_port]}), _ACCEPT],
                [_ct_state("established", "related"), _ACCEPT],
                [_match(_payload("udp", "dport"), 67), _ACCEPT],
                [_match(_payload("icmp", "type"), "echo-request"), _ACCEPT],
                # Slowloris: cap the connections one client holds open to the portal.
                [
                    portal,
                    _ct_state("new"),
                    {
                        "set": {
                            "op": "add",
                            "elem": _payload("ip", "saddr"),
                            "set": "@" + CONNS,
                            "stmt": [{"ct count": {"val": layout.portal_conn_limit, "inv": True}}],
                        }
                    },
                    _COUNTER,
                    {"reject": {"type": "tcp reset"}},
                ],
                [
                    portal,
                    _ct_state("new"),
                    not_authorized,
                    _meter(FLOOD, layout.portal_conn_rate),
                    _COUNTER,
                    _DROP,
                ],
                [portal, _ACCEPT],
                [_match(_CLIENT_ID, "@" + AUTHORIZED), tcp("@" + LAN_TCP_PORTS), _ACCEPT],
                [_COUNTER, _DROP],
            ],
        ),
        # The uplink is the internet (or a provider's network): replies to the gateway's own
        # traffic, what the uplink's own address configuration needs, and the management
        # ports the operator opened. The portal, DNS and DHCP never answer there.
        "wan_input": (
            None,
            [
                [_ct_state("established", "related"), _ACCEPT],
                [*icmpv6(WAN_ND_TYPES), _ACCEPT],
                [
                    _match(_payload("udp", "sport"), 67),
                    _match(_payload("udp", "dport"), 68),
                    _ACCEPT,
                ],
                [
                    _match(_payload("udp", "sport"), 547),
                    _match(_payload("udp", "dport"), 546),
                    _ACCEPT,
                ],
                [tcp("@" + WAN_TCP_PORTS), _ACCEPT],
                *(
                    [
                        [
                            _match(_payload("ip", "saddr"), _any_of(layout.coa_servers)),
                            _match(_payload("udp", "dport"), layout.coa_port),
                            _ACCEPT,
                        ]
                    ]
                    if layout.coa_servers and layout.coa_port
                    else []
                ),
                [_COUNTER, _DROP],
            ],
        ),
    }


def table_commands(
    layout: Layout,
    clients: Iterable[Client] = (),
    blocked: Iterable[str] = (),
    walled_dns: Iterable[tuple[str, int]] = (),
) -> list[Command]:
    """Replace the whole table, elements included, in one transaction.

    ``add`` then ``delete`` first makes the delete succeed whether or not the table exists;
    other tables are never named. ``walled_dns`` carries the (address, seconds left) entries
    dnsmasq had put in the old table: dnsmasq answers from its cache without re-adding them.
    """
    table = {"family": FAMILY, "name": layout.table}
    cmds: list[Command] = [
        {"add": {"table": table}},
        {"delete": {"table": table}},
        {"add": {"table": table}},
    ]
    cmds += _sets(layout)
    chains = _chains(layout)
    for name, (base, _rules) in chains.items():
        cmds.append({"add": {"chain": layout.ref(name=name, **(base or {}))}})
    for name, (_base, rules) in chains.items():
        for expr in rules:
            cmds.append({"add": {"rule": layout.ref(chain=name, expr=expr)}})
    cmds += client_commands(layout, "add", clients)
    cmds += element_command(layout, "add", BLOCKED, list(blocked))
    cmds += element_command(
        layout,
        "add",
        WALLED_DNS,
        [{"elem": {"val": ip, "timeout": max(1, seconds)}} for ip, seconds in walled_dns],
    )
    return cmds


def delete_table_commands(layout: Layout) -> list[Command]:
    table = {"family": FAMILY, "name": layout.table}
    return [{"add": {"table": table}}, {"delete": {"table": table}}]
