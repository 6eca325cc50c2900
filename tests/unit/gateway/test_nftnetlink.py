"""The nf_tables batch of a login (gateway/nftnetlink.py): its elements are byte for byte what
``nft --debug=mnl add element …`` sends (captured on this machine's nftables 1.0.6), the batch
is framed as the kernel wants it (begin, one message per set, end), what it does not know is
left to libnftables, a hostile or broken value is refused before anything is sent, and the
sets it encodes are laid out as gateway/ruleset.py defines them."""

from __future__ import annotations

import socket
import struct

import pytest

from gateway import nftnetlink as nl
from gateway import ruleset
from gateway.nftables import Nftables
from hotspot.errors import ErrorCode, KernelError

# The NFTA_SET_ELEM_LIST_ELEMENTS attribute of `nft --debug=mnl add element inet t
# authorized "{ 10.10.0.5 . 02:00:00:00:00:05 }"` and of `… down_class "{ 10.10.0.5 : 1:5 }"`.
AUTHORIZED_ELEMENTS = bytes.fromhex("1c0003801800018014000180100001000a0a00050200000000050000")
DOWN_CLASS_ELEMENTS = bytes.fromhex(
    "200003801c0001800c000180080001000a0a00050c0002800800010005000100"
)


def ref(name: str, elem: list) -> dict:
    return {"family": "inet", "table": "t", "name": name, "elem": elem}


def add(name: str, *elem) -> dict:
    return {"add": {"element": ref(name, list(elem))}}


def delete(name: str, *elem) -> dict:
    return {"delete": {"element": ref(name, list(elem))}}


def split(batch: bytes) -> list[tuple[int, int, int, bytes]]:
    """(type, flags, seq, body) of each message."""
    out = []
    at = 0
    while at < len(batch):
        length, kind, flags, seq, _pid = struct.unpack_from("=IHHII", batch, at)
        out.append((kind, flags, seq, batch[at + 16 : at + length]))
        at += (length + 3) & ~3
    return out


def test_a_login_is_byte_for_byte_what_nft_sends():
    batch, acked = nl.encode_batch(
        [
            add("down_class", ["10.10.0.5", "1:5"]),
            add("authorized", {"concat": ["10.10.0.5", "02:00:00:00:00:05"]}),
        ],
        100,
    )
    msgs = split(batch)
    assert [m[0] for m in msgs] == [16, 0x0A0C, 0x0A0C, 17]  # begin, 2 × NEWSETELEM, end
    assert [m[2] for m in msgs] == [100, 101, 102, 103] and acked == [101, 102]
    assert msgs[0][3] == bytes.fromhex("0000000a")  # AF_UNSPEC, version 0, res_id NFTABLES
    for _kind, flags, _seq, body in msgs[1:3]:
        assert flags & nl.NLM_F_ACK and flags & nl.NLM_F_REQUEST
        assert body[:4] == bytes.fromhex("01000000")  # NFPROTO_INET
    down, auth = msgs[1][3][4:], msgs[2][3][4:]
    table = bytes.fromhex("06000100") + b"t\0" + bytes(2)
    assert down == table + bytes.fromhex("0f000200") + b"down_class\0" + bytes(1) + (
        DOWN_CLASS_ELEMENTS
    )
    assert auth == table + bytes.fromhex("0f000200") + b"authorized\0" + bytes(1) + (
        AUTHORIZED_ELEMENTS
    )


def test_a_kick_deletes_by_key_alone():
    batch, acked = nl.encode_batch(
        [
            delete("authorized", {"concat": ["10.10.0.5", "02:00:00:00:00:05"]}),
            delete("down_class", "10.10.0.5"),
            add("blocked", "02:00:00:00:00:05"),
        ],
        1,
    )
    msgs = split(batch)
    assert [m[0] for m in msgs] == [16, 0x0A0E, 0x0A0E, 0x0A0C, 17]
    assert len(acked) == 3
    assert msgs[1][3].endswith(AUTHORIZED_ELEMENTS)
    # the map entry by its key, no value; the MAC alone: 6 bytes, padded
    assert msgs[2][3].endswith(bytes.fromhex("14000380100001800c000180080001000a0a0005"))
    assert msgs[3][3].endswith(bytes.fromhex("1800038014000180100001800a0001000200000000050000"))


def test_classids_are_host_order_handles():
    assert nl.classid("1:2a") == struct.pack("=I", 0x1002A)
    assert nl.classid("ffff:ffff") == struct.pack("=I", 0xFFFFFFFF)


@pytest.mark.parametrize(
    "command",
    [
        add("authorized", {"concat": ["10.10.0.300", "02:00:00:00:00:05"]}),
        add("authorized", {"concat": ["10.10.0.5; flush ruleset", "02:00:00:00:00:05"]}),
        add("authorized", {"concat": ["10.10.0.5", "02:00:00:00:05"]}),
        add("authorized", {"concat": ["10.10.0.5", "02:00:00:00:00:0g"]}),
        add("authorized", {"concat": ["10.10.0.5"]}),
        add("authorized", "10.10.0.5"),
        add("down_class", ["10.10.0.5", "1:10000"]),
        add("down_class", ["10.10.0.5", "1"]),
        add("down_class", ["10.10.0.5/24", "1:5"]),
        add("down_class", "10.10.0.5"),
        add("blocked", "02:00:00:00:00:05:06"),
        add("blocked", 12345),
        {"add": {"element": {**ref("blocked", ["02:00:00:00:00:05"]), "table": "t\0x"}}},
    ],
)
def test_a_hostile_value_is_refused_before_anything_is_sent(command):
    with pytest.raises(nl.MalformedElement):
        nl.encode_batch([add("blocked", "02:00:00:00:00:01"), command], 1)

    class Spy(nl.NftNetlink):
        def _socket(self):  # would open the socket: nothing may get this far
            raise AssertionError("a socket was opened for a malformed element")

    nft = Nftables.__new__(Nftables)
    nft.netlink = Spy()
    nft._run = lambda obj: pytest.fail("libnftables was asked")  # type: ignore[method-assign]
    with pytest.raises(KernelError) as err:
        nft.apply([command])
    assert err.value.code is ErrorCode.NFTABLES


@pytest.mark.parametrize(
    "commands",
    [
        [{"flush": {"set": ref("walled_garden_dns", [])}}],
        [add("walled_garden_dns", {"elem": {"val": "1.2.3.4", "timeout": 30}})],
        [add("lan_tcp_ports", 22)],
        [add("authorized", {"concat": ["10.10.0.5", "02:00:00:00:00:05"]}), {"add": {"table": {}}}],
        [{"add": {"element": {**ref("authorized", []), "family": "ip"}}}],
    ],
)
def test_what_it_does_not_know_is_left_to_libnftables(commands):
    assert nl.encode_batch(commands, 1) is None


def test_the_sets_it_encodes_are_laid_out_as_the_ruleset_defines_them():
    layout = ruleset.Layout(
        table="t",
        lan="br-lan",
        wan="eth0",
        gateway_ip="10.10.0.1",
        lan_network="10.10.0.0/22",
        portal_port=8080,
        portal_ports=(8080,),
        portal_conn_rate=10,
        portal_conn_limit=20,
        lan_tcp_ports=(),
        walled_garden=(),
    )
    defined = {}
    for cmd in ruleset.table_commands(layout, [], [], []):
        for kind in ("set", "map"):
            obj = cmd.get("add", {}).get(kind)
            if obj is not None:
                types = obj["type"] if isinstance(obj["type"], list) else [obj["type"]]
                defined[obj["name"]] = (tuple(types), obj.get("map"))
    for name, layout_of in nl.KINDS.items():
        assert defined[name] == layout_of, name


def _element_list(*elems: bytes) -> bytes:
    return nl._nested(nl.NFTA_SET_ELEM_LIST_ELEMENTS, *elems)


def test_the_portal_peers_are_read_with_their_timeouts():
    def elem(ip: str, mac: str, timeout_ms: int | None, left_ms: int | None) -> bytes:
        key = socket.inet_aton(ip) + bytes.fromhex(mac.replace(":", "")) + bytes(2)
        attrs = [nl._nested(nl.NFTA_SET_ELEM_KEY, nl._attr(nl.NFTA_DATA_VALUE, key))]
        if timeout_ms is not None:
            attrs.append(nl._attr(nl.NFTA_SET_ELEM_TIMEOUT, struct.pack("!Q", timeout_ms)))
        if left_ms is not None:
            attrs.append(nl._attr(nl.NFTA_SET_ELEM_EXPIRATION, struct.pack("!Q", left_ms)))
        return nl._nested(nl.NFTA_LIST_ELEM, *attrs)

    body = (
        nl._attr(nl.NFTA_SET_ELEM_LIST_TABLE, b"t\0")
        + nl._attr(nl.NFTA_SET_ELEM_LIST_SET, b"portal_peers\0")
        + _element_list(
            elem("10.10.0.8", "02:00:00:00:00:08", 10000, 7968),
            elem("10.10.0.7", "02:00:00:00:00:07", None, 27956),
        )
    )
    assert nl.parse_peer_elements(body, 0, len(body)) == [
        ("10.10.0.8", "02:00:00:00:00:08", 10000, 7968),
        ("10.10.0.7", "02:00:00:00:00:07", None, 27956),
    ]
    with pytest.raises(OSError):
        nl.parse_peer_elements(body[:-3], 0, len(body) - 3)  # truncated: malformed, not read
    # A login by address reads only its address's elements (the others are not decoded).
    assert nl.parse_peer_elements(body, 0, len(body), at=socket.inet_aton("10.10.0.7")) == [
        ("10.10.0.7", "02:00:00:00:00:07", None, 27956),
    ]
    assert nl.parse_peer_elements(body, 0, len(body), at=socket.inet_aton("10.10.0.9")) == []
    # An element laid out otherwise (its expiration before its key) is walked, not skipped:
    # the skip trusts only the layout it checked.
    key = socket.inet_aton("10.10.0.7") + bytes.fromhex("020000000007") + bytes(2)
    reordered = nl._nested(
        nl.NFTA_LIST_ELEM,
        nl._attr(nl.NFTA_SET_ELEM_EXPIRATION, struct.pack("!Q", 5000)),
        nl._nested(nl.NFTA_SET_ELEM_KEY, nl._attr(nl.NFTA_DATA_VALUE, key)),
    )
    body = nl._attr(nl.NFTA_SET_ELEM_LIST_TABLE, b"t\0") + _element_list(
        elem("10.10.0.8", "02:00:00:00:00:08", None, 1), reordered
    )
    assert nl.parse_peer_elements(body, 0, len(body), at=socket.inet_aton("10.10.0.7")) == [
        ("10.10.0.7", "02:00:00:00:00:07", None, 5000),
    ]


# -- the tick's look at the login sets (element_values, login_sets_of) ---------------------

# The first elements of a NEWSETELEM dump of the authorized set and of down_class, as this
# machine's kernel (6.18) sent them: its nests without NLA_F_NESTED.
KERNEL_AUTHORIZED = bytes.fromhex("1800010014000100100001000a0a1a7f02000a0a1a7f0000")
KERNEL_DOWN_CLASS = bytes.fromhex("1c0001000c000100080001000a0a204e0c000200080001004e200100")


def _dump_body(*elements: bytes) -> bytes:
    return (
        nl._attr(nl.NFTA_SET_ELEM_LIST_TABLE, b"t\0")
        + nl._attr(nl.NFTA_SET_ELEM_LIST_SET, b"s\0")
        + _element_list(*elements)
    )


def test_the_kernels_elements_are_read_with_their_keys_and_data():
    body = _dump_body(KERNEL_AUTHORIZED, KERNEL_DOWN_CLASS)
    assert nl.element_values(body, 0, len(body)) == [
        (bytes.fromhex("0a0a1a7f02000a0a1a7f0000"), None),
        (bytes.fromhex("0a0a204e"), struct.pack("=I", 0x1204E)),
    ]


def test_an_element_laid_out_otherwise_is_walked_not_lost():
    key = nl._nested(nl.NFTA_SET_ELEM_KEY, nl._attr(nl.NFTA_DATA_VALUE, bytes.fromhex("0a0a0005")))
    data = nl._nested(
        nl.NFTA_SET_ELEM_DATA, nl._attr(nl.NFTA_DATA_VALUE, struct.pack("=I", 0x10005))
    )
    flags = nl._attr(3, struct.pack("!I", 0))  # NFTA_SET_ELEM_FLAGS before the key
    timeout = nl._attr(nl.NFTA_SET_ELEM_TIMEOUT, struct.pack("!Q", 10000))
    body = _dump_body(
        nl._nested(nl.NFTA_LIST_ELEM, flags, key, data),  # the request's nests: flag on
        nl._nested(nl.NFTA_LIST_ELEM, key, data, timeout),
        nl._nested(nl.NFTA_LIST_ELEM, flags),  # no key: not an element to compare
    )
    expected = (bytes.fromhex("0a0a0005"), struct.pack("=I", 0x10005))
    assert nl.element_values(body, 0, len(body)) == [expected, expected]


def test_a_truncated_dump_is_malformed_not_half_read():
    body = _dump_body(KERNEL_AUTHORIZED, KERNEL_DOWN_CLASS)
    with pytest.raises(OSError):
        nl.element_values(body[:-3], 0, len(body) - 3)


def test_the_login_sets_are_what_parse_elements_makes_of_a_listing():
    from gateway.nftables import parse_elements

    found = {
        ruleset.AUTHORIZED: [(bytes.fromhex("0a0a00050200000000050000"), None)],
        ruleset.DOWN_CLASS: [(bytes.fromhex("0a0a0005"), struct.pack("=I", 0x10005))],
        ruleset.UP_CLASS: [(bytes.fromhex("0a0a0005"), struct.pack("=I", 0x1FFFF))],
        ruleset.BLOCKED: [(bytes.fromhex("0a1b2c3d4e5f"), None)],
    }
    listing = {
        ruleset.AUTHORIZED: [{"concat": ["10.10.0.5", "02:00:00:00:00:05"]}],
        ruleset.DOWN_CLASS: [["10.10.0.5", "1:5"]],
        ruleset.UP_CLASS: [["10.10.0.5", "1:ffff"]],
        ruleset.BLOCKED: ["0a:1b:2c:3d:4e:5f"],
    }
    assert nl.login_sets_of(found) == parse_elements(listing)
    assert nl.login_sets_of({}) == (set(), {}, {}, set())


@pytest.mark.parametrize(
    "name, element",
    [
        (ruleset.AUTHORIZED, (bytes.fromhex("0a0a0005020000"), None)),  # a MAC cut short
        (ruleset.DOWN_CLASS, (bytes.fromhex("0a0a00"), struct.pack("=I", 0x10005))),
        (ruleset.UP_CLASS, (bytes.fromhex("0a0a0005"), None)),  # a map element without data
        (ruleset.UP_CLASS, (bytes.fromhex("0a0a0005"), b"\x05\x00\x01")),
        (ruleset.BLOCKED, (bytes.fromhex("0a1b2c"), None)),
    ],
)
def test_a_malformed_element_fails_the_look_which_then_lists(name, element):
    # an OSError: Nftables.login_sets lists the table through libnftables instead
    with pytest.raises(OSError):
        nl.login_sets_of({name: [element]})


def test_a_look_is_one_pass_whatever_the_rulesets_generation_does(monkeypatch):
    """dnsmasq's ``nftset=`` and a policy move the kernel's generation without touching the
    login sets: the look neither reads again nor fails (the engine's own generation says
    whether a login overlapped it: tests/unit/gateway/test_tick_slices.py)."""
    look = nl.NftNetlink()
    generations = iter([{7}, {8}, {8, -1}, {9}])  # moved before, during and after a dump
    dumps = []

    def dump(family, table, name, parse, into):
        dumps.append(name)
        return next(generations)

    monkeypatch.setattr(look, "_dump_set", dump)
    assert look.login_sets("inet", "t") == (set(), {}, {}, set())
    assert dumps == [ruleset.AUTHORIZED, ruleset.DOWN_CLASS, ruleset.UP_CLASS, ruleset.BLOCKED]
