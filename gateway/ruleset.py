"""Pure builder of the gateway's nftables table, as libnftables JSON commands.

Everything the data path decides per packet is a set or map lookup, never a per-client rule:

* ``authorized``    ipv4_addr . ether_addr: a client is let out only from the address it
                    was authorized at, with its own MAC (a neighbour cannot borrow a login).
* ``down_class``    ipv4_addr : classid — ``meta priority set`` picks the client's HTB class
* ``up_class``      on the LAN (download) and on the WAN (upload). Set in the forward hook,
                    because ip_forward() resets skb->priority before it.
* ``blocked``       ether_addr: never forwarded, whatever else says.
* ``walled_garden`` static addresses/networks from the config, reachable before login;
  ``walled_garden_dns`` the same filled by dnsmasq's ``nftset=`` (elements time out).
* ``portal_flood``  a meter: new connections per second per unauthorized client to the portal.
* ``portal_peers``  ipv4_addr . ether_addr: who talked to the portal from which address in
                    the last ``PEERS_TIMEOUT`` seconds (refreshed by every packet). The engine
                    acts on a session for a portal request only if no other MAC is in it for
                    the address (docs/security/ident.md).

Nothing here touches the kernel; :mod:`gateway.nftables` applies the commands in one transaction.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from hotspot.config import Config

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
PORTAL_PEERS = "portal_peers"
LAN_TCP_PORTS = "lan_tcp_ports"


# -- expression helpers -------------------------------------------------------------------


def _meta(key: str) -> dict:
    return {"meta": {"key": key}}


def _payload(protocol: str, field: str) -> dict:
    return {"payload": {"protocol": protocol, "field": field}}


def _match(left: Any, right: Any, op: str = "==") -> dict:
    return {"match": {"op": op, "left": left, "right": right}}


def _ct_state(*states: str) -> dict:
    return _match({"ct": {"key": "state"}}, list(states) if len(states) > 1 else states[0], "in")


_CLIENT_ID = {"concat": [_payload("ip", "saddr"), _payload("ether", "saddr")]}
_ACCEPT = {"accept": None}
_DROP = {"drop": None}
_RETURN = {"return": None}
_COUNTER = {"counter": None}


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
    lan_tcp_ports: tuple[int, ...]
    walled_garden: tuple[str, ...]

    @classmethod
    def from_config(cls, config: Config) -> Layout:
        net = config.network
        ports = [net.portal_port]
        portal = config.portal
        if portal.tls_cert and portal.https_port not in ports:
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
            lan_tcp_ports=net.lan_tcp_ports,
            walled_garden=net.walled_garden,
        )

    def ref(self, **obj: Any) -> dict:
        return {"family": FAMILY, "table": self.table, **obj}


@dataclass(frozen=True)
class Client:
    """A client as the data path sees it."""

    ip: str
    mac: str
    classid: str  # "1:2a", the same minor on both devices


# -- elements -----------------------------------------------------------------------------


def authorized_elem(ip: str, mac: str) -> dict:
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


# -- the table ----------------------------------------------------------------------------


def _sets(layout: Layout) -> list[Command]:
    sets: list[dict] = [
        layout.ref(name=AUTHORIZED, type=["ipv4_addr", "ether_addr"]),
        layout.ref(name=BLOCKED, type="ether_addr"),
        layout.ref(name=WALLED, type="ipv4_addr", flags=["interval"]),
        layout.ref(
            name=WALLED_DNS, type="ipv4_addr", flags=["timeout"], timeout=WALLED_DNS_TIMEOUT
        ),
        layout.ref(
            name=FLOOD, type="ipv4_addr", size=65535, flags=["timeout"], timeout=FLOOD_TIMEOUT
        ),
        layout.ref(name=LAN_TCP_PORTS, type="inet_service"),
        layout.ref(
            name=PORTAL_PEERS,
            type=["ipv4_addr", "ether_addr"],
            size=65535,
            flags=["timeout"],
            timeout=PEERS_TIMEOUT,
        ),
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
    if layout.lan_tcp_ports:
        cmds.append(
            {"add": {"element": layout.ref(name=LAN_TCP_PORTS, elem=list(layout.lan_tcp_ports))}}
        )
    return cmds


def _chains(layout: Layout) -> dict[str, tuple[dict | None, list[list[dict]]]]:
    """chain name → (base-chain hook or None, rules); each rule is a list of expressions."""
    lan_in = _match(_meta("iifname"), layout.lan)
    lan_out = _match(_meta("oifname"), layout.lan)
    wan_out = _match(_meta("oifname"), layout.wan)
    tcp = lambda port: _match(_payload("tcp", "dport"), port)  # noqa: E731
    portal = tcp(
        layout.portal_ports[0]
        if len(layout.portal_ports) == 1
        else {"set": list(layout.portal_ports)}
    )
    walled = [
        _match(_payload("ip", "daddr"), "@" + WALLED),
        _match(_payload("ip", "daddr"), "@" + WALLED_DNS),
    ]

    def hook(kind: str, name: str, prio: int) -> dict[str, Any]:
        return {"type": kind, "hook": name, "prio": prio, "policy": "accept"}

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
                [_match(_CLIENT_ID, "@" + AUTHORIZED), _RETURN],
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
                [_match(_CLIENT_ID, "@" + AUTHORIZED), {"jump": {"target": "client_up"}}],
                [walled[0], _ACCEPT],
                # Use keeps a name-based entry alive: dnsmasq re-adding it does not.
                [
                    walled[1],
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
                [_ct_state("established", "related"), _ACCEPT],
                [_match(_meta("nfproto"), "ipv6"), _ACCEPT],
                [_match(_payload("udp", "dport"), {"set": [53, 67]}), _ACCEPT],
                [_match(_payload("tcp", "dport"), 53), _ACCEPT],
                [_match(_payload("icmp", "type"), "echo-request"), _ACCEPT],
                [
                    portal,
                    _ct_state("new"),
                    _match(_CLIENT_ID, "@" + AUTHORIZED, "!="),
                    {
                        "set": {
                            "op": "add",
                            "elem": _payload("ip", "saddr"),
                            "set": "@" + FLOOD,
                            "stmt": [
                                {
                                    "limit": {
                                        "rate": layout.portal_conn_rate,
                                        "burst": 2 * layout.portal_conn_rate,
                                        "per": "second",
                                        "inv": True,
                                    }
                                }
                            ],
                        }
                    },
                    _COUNTER,
                    _DROP,
                ],
                [portal, _ACCEPT],
                [_match(_CLIENT_ID, "@" + AUTHORIZED), tcp("@" + LAN_TCP_PORTS), _ACCEPT],
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
