"""The small ctnetlink client's messages, packed and parsed as pure logic (no root): the dump
request, a real kernel answer, the deletions and their acknowledgements, malformed input."""

from __future__ import annotations

import errno
import ipaddress
import socket
import struct

import pytest

from gateway import conntrack as ct_mod
from gateway import ctnetlink as m
from hotspot.errors import ErrorCode, KernelError

# One IPCTNL_MSG_CT_NEW message of a filtered dump, as this machine's kernel (6.18) sent it:
# UDP 127.0.0.1:40000 -> 127.0.0.1:53, unreplied (status, mark, id, use, timeout follow).
KERNEL_ENTRY = bytes.fromhex(
    "a40000000001220007000000df270000020000003400018014000180080001007f000001080002007f00"
    "00011c0002800500010011000000060002009c40000006000300003500003400028014000180080001007f"
    "000001080002007f0000011c00028005000100110000000600020000350000060003009c40000008000300"
    "00000008080008000000000008000c009233dff708000b0000000001080007000000001d"
)


def done(seq: int) -> bytes:
    return struct.pack("=IHHIIi", 20, m.NLMSG_DONE, 2, seq, 0, 0)


def ack(seq: int, code: int = 0) -> bytes:
    """An NLMSG_ERROR: the (negative) error and the request's header."""
    header = struct.pack("=IHHII", 36, m.CT_DELETE, 5, seq, 0)
    return struct.pack("=IHHIIi", 36, m.NLMSG_ERROR, 0, seq, 0, -code) + header


class FakeSocket:
    """Answers each ``send`` with what ``answer(data)`` returns, read by ``recv`` in turn."""

    def __init__(self, answer):
        self.answer = answer
        self.sent: list[bytes] = []
        self.queue: list[bytes] = []

    def send(self, data: bytes) -> int:
        self.sent.append(data)
        self.queue.extend(self.answer(data))
        return len(data)

    def recv(self, size: int) -> bytes:
        assert self.queue, "read with nothing to read: the client would hang"
        return self.queue.pop(0)

    def close(self) -> None:
        pass


def client_with(answer) -> tuple[m.CtNetlink, FakeSocket]:
    client = m.CtNetlink()
    fake = FakeSocket(answer)
    client._sock = fake  # type: ignore[assignment]
    return client, fake


def test_the_dump_request_asks_the_kernel_to_filter_by_source():
    request = m.dump_request("10.10.0.42", seq=9)
    length, kind, flags, seq, port = struct.unpack_from("=IHHII", request)
    assert (length, kind, seq, port) == (len(request), 0x101, 9, 0)
    assert flags == m.NLM_F_REQUEST | m.NLM_F_DUMP
    assert request[16:20] == bytes([socket.AF_INET, 0, 0, 0])
    attrs = m._attrs(request, 20, len(request))
    assert set(attrs) == {m.CTA_TUPLE_ORIG, m.CTA_FILTER}
    ip = m._attrs(request, *m._attrs(request, *attrs[m.CTA_TUPLE_ORIG])[m.CTA_TUPLE_IP])
    a, b = ip[m.CTA_IP_V4_SRC]
    assert request[a:b] == socket.inet_aton("10.10.0.42")
    flags_at = m._attrs(request, *attrs[m.CTA_FILTER])[m.CTA_FILTER_ORIG_FLAGS]
    assert struct.unpack_from("=I", request, flags_at[0])[0] == m.CTA_FILTER_FLAG_IP_SRC


def test_a_kernel_entry_is_parsed():
    (msg,) = m.messages(KERNEL_ENTRY)
    kind, _flags, seq, start, end = msg
    assert (kind, seq) == (0x100, 7)
    entry = m.parse_entry(KERNEL_ENTRY, start, end)
    assert entry is not None
    assert entry.tuple_orig == m.CtTuple(17, "127.0.0.1", "127.0.0.1", 40000, 53)
    assert entry.tuple_reply == m.CtTuple(17, "127.0.0.1", "127.0.0.1", 53, 40000)
    assert ct_mod._is_dns(entry)


def test_a_deletion_names_the_entry_by_the_tuple_the_kernel_sent():
    _kind, _flags, _seq, start, end = m.messages(KERNEL_ENTRY)[0]
    entry = m.parse_entry(KERNEL_ENTRY, start, end)
    assert entry is not None
    request = m.delete_request(entry.orig_attr, seq=3)
    _len, kind, flags, seq, _port = struct.unpack_from("=IHHII", request)
    assert (kind, flags, seq) == (0x102, m.NLM_F_REQUEST | m.NLM_F_ACK, 3)
    # The original tuple's bytes, exactly as they came (offset 20 of the message body).
    assert request[20:] == KERNEL_ENTRY[20 : 20 + 0x34]


@pytest.mark.parametrize(
    "data",
    [
        KERNEL_ENTRY[:-4],  # the message says it is longer than what arrived
        KERNEL_ENTRY[:20] + b"\x02\x00\x01\x00" + KERNEL_ENTRY[24:],  # an attribute of length 2
        KERNEL_ENTRY[:20] + b"\xff\x00\x01\x80" + KERNEL_ENTRY[24:],  # past the message's end
    ],
)
def test_malformed_answers_are_refused_not_misread(data):
    with pytest.raises(m.CtNetlinkError):
        for _kind, _flags, _seq, start, end in m.messages(data):
            m.parse_entry(data, start, end)


def test_a_dump_skips_late_answers_and_reads_to_done():
    def answer(data):
        seq = struct.unpack_from("=I", data, 8)[0]
        stale = KERNEL_ENTRY[:8] + struct.pack("=I", seq - 1) + KERNEL_ENTRY[12:]
        mine = KERNEL_ENTRY[:8] + struct.pack("=I", seq) + KERNEL_ENTRY[12:]
        return [stale + done(seq - 1), mine, mine + done(seq)]

    client, _fake = client_with(answer)
    entries = client.entries_from("127.0.0.1")
    assert [e.tuple_orig.sport for e in entries] == [40000, 40000]


def test_a_refused_dump_raises_with_the_kernels_error():
    client, _fake = client_with(lambda data: [ack(struct.unpack_from("=I", data, 8)[0], 1)])
    with pytest.raises(m.CtNetlinkError) as caught:
        client.entries_from("127.0.0.1")
    assert caught.value.errno == errno.EPERM


def entries(n: int) -> list[m.CtEntry]:
    _kind, _flags, _seq, start, end = m.messages(KERNEL_ENTRY)[0]
    entry = m.parse_entry(KERNEL_ENTRY, start, end)
    assert entry is not None
    return [entry] * n


def seqs_of(data: bytes) -> list[int]:
    return [seq for _kind, _flags, seq, _start, _end in m.messages(data)]


def test_deletions_go_in_few_datagrams_and_gone_entries_are_no_error():
    def answer(data):
        # Answers out of order, one entry already gone (it timed out meanwhile).
        codes = [errno.ENOENT if i == 1 else 0 for i, _ in enumerate(seqs_of(data))]
        return [b"".join(ack(s, c) for s, c in reversed(list(zip(seqs_of(data), codes))))]

    client, fake = client_with(answer)
    assert client.delete(entries(450)) == 447  # three datagrams, one gone in each
    assert [len(seqs_of(d)) for d in fake.sent] == [200, 200, 50]
    assert client.delete([]) == 0 and len(fake.sent) == 3


def test_a_refused_deletion_raises_after_every_answer_is_read():
    def answer(data):
        seqs = seqs_of(data)
        return [ack(seqs[0], errno.EPERM), b"".join(ack(s) for s in seqs[1:])]

    client, fake = client_with(answer)
    with pytest.raises(m.CtNetlinkError) as caught:
        client.delete(entries(3))
    assert caught.value.errno == errno.EPERM
    assert fake.queue == []  # nothing left to be misread by the next call


def test_the_adapter_turns_a_refusal_into_a_conntrack_error():
    adapter = ct_mod.Conntrack()
    client, _fake = client_with(lambda data: [ack(struct.unpack_from("=I", data, 8)[0], 1)])
    adapter.ct = client
    with pytest.raises(KernelError) as caught:
        adapter.flush_client("10.10.0.42")
    assert caught.value.code is ErrorCode.CONNTRACK


# Two events as this machine's kernel sent them (a UDP flow 127.0.0.7 -> 127.0.0.1:53, NAT
# redirected to port 5300, new and destroyed) and one not redirected (to port 99).
EVENT_NEW_REDIRECTED = bytes.fromhex(
    "94000000000100060000000000000000020000003400018014000180080001007f000007080002007f00"
    "00011c000280050001001100000006000200b56d000006000300003500003400028014000180080001007f"
    "000001080002007f0000071c00028005000100110000000600020014b4000006000300b56d000008000c00"
    "b6e7d2d208000300000001a8080007000000001e"
)
EVENT_DESTROY_REDIRECTED = bytes.fromhex(
    "9400000002010000000000009c216fbc020000003400018014000180080001007f000007080002007f00"
    "00011c000280050001001100000006000200b56d000006000300003500003400028014000180080001007f"
    "000001080002007f0000071c00028005000100110000000600020014b4000006000300b56d000008000c00"
    "b6e7d2d208000300000003a8080007000000001d"
)
EVENT_NEW_DIRECT = bytes.fromhex(
    "94000000000100060000000000000000020000003400018014000180080001007f000007080002007f00"
    "00011c0002800500010011000000060002008789000006000300006300003400028014000180080001007f"
    "000001080002007f0000071c00028005000100110000000600020000630000060003008789000008000c00"
    "8884aca10800030000000188080007000000001e"
)


def run_bpf(program, packet: bytes) -> int:
    """The few classic BPF instructions the filter uses, as the kernel runs them."""
    acc, pc = 0, 0
    while True:
        code, jt, jf, k = program[pc]
        if code in (m.BPF_LD_W_ABS, m.BPF_LD_H_ABS, m.BPF_LD_B_ABS):
            size = {m.BPF_LD_W_ABS: 4, m.BPF_LD_H_ABS: 2, m.BPF_LD_B_ABS: 1}[code]
            if k + size > len(packet):
                return 0  # a load past the end drops the packet
            acc = int.from_bytes(packet[k : k + size], "big")
        elif code == m.BPF_JEQ_K:
            pc += jt if acc == k else jf
        elif code == m.BPF_ALU_AND_K:
            acc &= k
        elif code == m.BPF_RET_K:
            return k
        else:
            raise AssertionError(f"unexpected instruction {code:#x}")
        pc += 1


def test_the_event_filter_keeps_redirected_flows_and_drops_the_rest():
    program = m.redirect_filter((5300, 8080))
    assert run_bpf(program, EVENT_NEW_REDIRECTED) > 0
    assert run_bpf(program, EVENT_DESTROY_REDIRECTED) > 0
    assert run_bpf(program, EVENT_NEW_DIRECT) == 0
    assert run_bpf(m.redirect_filter((99,)), EVENT_NEW_DIRECT) > 0


def test_the_event_filter_passes_what_it_does_not_know_to_python():
    """An IPv6 entry, or a layout of another size (a zone, ICMP): kept, never dropped unseen."""
    program = m.redirect_filter((5300,))
    ipv6 = EVENT_NEW_DIRECT[:16] + bytes([socket.AF_INET6]) + EVENT_NEW_DIRECT[17:]
    assert run_bpf(program, ipv6) > 0
    other_layout = EVENT_NEW_DIRECT[:20] + b"\x38\x00" + EVENT_NEW_DIRECT[22:]
    assert run_bpf(program, other_layout) > 0


class FakeEventSocket:
    def __init__(self, batches):
        self.batches = list(batches)

    def recv(self, size):
        if not self.batches:
            raise BlockingIOError
        batch = self.batches.pop(0)
        if isinstance(batch, BaseException):
            raise batch
        return batch


def index_with(events, dumps):
    """A started index over fakes: ``dumps`` are the entries each seeding dump returns."""
    client = m.CtNetlink()
    index = m.RedirectIndex(client, "127.0.0.1", {5300: (socket.IPPROTO_UDP,)})
    seeded = []

    def dump(request):
        seeded.append(request)
        return list(dumps.pop(0)) if dumps else []

    client.dump = dump  # type: ignore[method-assign]
    index._sock = FakeEventSocket([])  # type: ignore[assignment]
    index._seed()
    index._sock = FakeEventSocket(events)  # type: ignore[assignment]
    return index, seeded


def parsed(event: bytes) -> m.CtEntry:
    _kind, _flags, _seq, start, end = m.messages(event)[0]
    entry = m.parse_entry(event, start, end)
    assert entry is not None
    return entry


def test_the_index_follows_new_and_destroyed_flows():
    index, seeded = index_with([EVENT_NEW_REDIRECTED + EVENT_NEW_DIRECT], [[]])
    (entry,) = index.entries_from("127.0.0.7")
    assert entry.tuple_reply.sport == 5300
    index._sock.batches.append(EVENT_DESTROY_REDIRECTED)
    assert index.entries_from("127.0.0.7") == []
    assert len(seeded) == 1 and index.seeds == 1


def test_the_index_seeds_from_dumps_and_again_after_lost_events():
    before = parsed(EVENT_NEW_REDIRECTED)
    lost = OSError(errno.ENOBUFS, "No buffer space available")
    index, seeded = index_with([lost, EVENT_NEW_DIRECT], [[before], [before]])
    assert index.entries_from("127.0.0.7") == [before]
    assert index.seeds == 2 and len(seeded) == 2


def test_a_flow_to_another_hosts_port_of_that_number_is_not_indexed():
    elsewhere = EVENT_NEW_REDIRECTED.replace(
        bytes.fromhex("080001007f000001080002007f000007"),
        bytes.fromhex("08000100c6336402080002007f000007"),  # the reply from 198.51.100.2
    )
    index, _ = index_with([elsewhere], [[]])
    assert index.entries_from("127.0.0.7") == []


def test_a_flood_that_outruns_the_seeding_makes_the_index_say_it_cannot_tell():
    """Events lost, seeded again, and lost again meanwhile: no answer rather than a wrong one."""
    lost = OSError(errno.ENOBUFS, "No buffer space available")
    empty = BlockingIOError()
    index, seeded = index_with([lost, empty, empty, lost], [[], []])
    assert index.entries_from("127.0.0.7") is None
    assert len(seeded) == 2  # seeded once more, not in a loop


def test_the_adapter_asks_the_kernel_when_the_index_cannot_tell():
    adapter = ct_mod.Conntrack()
    dumped = []

    class Unsure:
        def entries_from(self, ip):
            return None

    adapter.redirects = Unsure()  # type: ignore[assignment]
    adapter.ct.entries_from = lambda ip: dumped.append(ip) or entries(2)  # type: ignore[method-assign]
    adapter.ct.delete = lambda found: len(found)  # type: ignore[method-assign]
    assert adapter.flush_walled("127.0.0.7", ("127.0.0.1", 8080)) == 2  # both DNS
    assert dumped == ["127.0.0.7"]


# -- the client-flow index (every LAN flow, for a kick) ------------------------------------

LOOPBACK = ipaddress.IPv4Network("127.0.0.0/8")


def from_source(event: bytes, address: str) -> bytes:
    """``event`` with its original source (and the reply's destination) at ``address``."""
    old = socket.inet_aton("127.0.0.7")
    return event.replace(
        b"\x08\x00\x01\x00" + old, b"\x08\x00\x01\x00" + socket.inet_aton(address), 1
    )


def test_the_source_filter_keeps_the_lans_flows_and_drops_the_rest():
    program = m.source_filter(ipaddress.IPv4Network("10.10.0.0/22"))
    assert run_bpf(program, from_source(EVENT_NEW_DIRECT, "10.10.3.254")) > 0
    assert run_bpf(program, from_source(EVENT_DESTROY_REDIRECTED, "10.10.0.12")) > 0
    assert run_bpf(program, from_source(EVENT_NEW_DIRECT, "10.10.4.1")) == 0  # next /22
    assert run_bpf(program, EVENT_NEW_DIRECT) == 0  # 127.0.0.7: the gateway's own
    ipv6 = EVENT_NEW_DIRECT[:16] + bytes([socket.AF_INET6]) + EVENT_NEW_DIRECT[17:]
    assert run_bpf(program, ipv6) == 0  # the index is IPv4's


def test_the_source_filter_passes_a_layout_it_does_not_know_to_python():
    program = m.source_filter(ipaddress.IPv4Network("10.10.0.0/22"))
    # The original tuple's IP part not first (a layout it does not know): kept.
    other = EVENT_NEW_DIRECT[:26] + b"\x02\x80" + EVENT_NEW_DIRECT[28:]
    assert run_bpf(program, other) > 0


def test_an_events_source_and_tuple_are_read_at_fixed_offsets_or_parsed():
    _kind, _flags, _seq, start, end = m.messages(EVENT_NEW_DIRECT)[0]
    source, orig = m.source_and_tuple(EVENT_NEW_DIRECT, start, end)  # type: ignore[misc]
    assert source == socket.inet_aton("127.0.0.7")
    assert orig == parsed(EVENT_NEW_DIRECT).orig_attr  # what a deletion names
    # The same entry with an attribute before the original tuple: parsed the long way.
    extra = m._attr(8, b"\x00\x00\x00\x07")  # CTA_MARK
    body = EVENT_NEW_DIRECT[16:20] + extra + EVENT_NEW_DIRECT[20:]
    message = struct.pack("=IHHII", 16 + len(body), m.CT_NEW, 0, 0, 0) + body
    _kind, _flags, _seq, start, end = m.messages(message)[0]
    assert m.source_and_tuple(message, start, end) == (source, orig)
    ipv6 = EVENT_NEW_DIRECT[:16] + bytes([socket.AF_INET6]) + EVENT_NEW_DIRECT[17:]
    assert m.source_and_tuple(ipv6, start, end) is None


def flow_index(events, dump=(), limit=1000):
    """A seeded client-flow index over fakes: ``dump`` is what the seeding dump returns
    ((source, tuple) pairs), ``events`` what the event socket then gives."""
    index = m.ClientFlowIndex(LOOPBACK, limit)
    index._seeder.dump_parsed = lambda request, parse: list(dump)  # type: ignore[method-assign]
    index._sock = FakeEventSocket([])  # type: ignore[assignment]
    index._seed()
    index._sock = FakeEventSocket(events)  # type: ignore[assignment]
    return index


def test_the_client_index_follows_new_and_destroyed_flows_by_exact_address():
    twin = from_source(EVENT_NEW_DIRECT, "127.0.0.71")  # "127.0.0.7" is a prefix of it
    index = flow_index([EVENT_NEW_REDIRECTED + EVENT_NEW_DIRECT + twin])
    assert sorted(index.tuples_from("127.0.0.7") or []) == sorted(
        [parsed(EVENT_NEW_REDIRECTED).orig_attr, parsed(EVENT_NEW_DIRECT).orig_attr]
    )
    assert index.tuples_from("127.0.0.71") == [parsed(twin).orig_attr]
    index._sock.batches.append(EVENT_DESTROY_REDIRECTED)
    assert index.tuples_from("127.0.0.7") == [parsed(EVENT_NEW_DIRECT).orig_attr]
    index.forget("127.0.0.7", [parsed(EVENT_NEW_DIRECT).orig_attr])
    assert index.tuples_from("127.0.0.7") == [] and len(index) == 1
    assert index.seeds == 1 and index.losses == 0


def test_the_client_index_starts_from_its_dump_and_keeps_only_the_lans_sources():
    seeded = (socket.inet_aton("127.0.0.7"), b"seeded"), (socket.inet_aton("192.0.2.1"), b"x")
    index = flow_index([], dump=seeded)
    assert index.tuples_from("127.0.0.7") == [b"seeded"]
    assert index.tuples_from("192.0.2.1") == [] and len(index) == 1


def test_lost_events_make_the_client_index_say_it_cannot_tell_until_seeded_again():
    lost = OSError(errno.ENOBUFS, "No buffer space available")
    index = flow_index([EVENT_NEW_DIRECT, lost])
    assert index.tuples_from("127.0.0.7") is None
    assert not index.ready() and index.losses == 1 and len(index) == 0  # its memory freed
    index._seed()  # (its thread does this, at most every RESEED_INTERVAL seconds)
    assert index.tuples_from("127.0.0.7") == [] and index.seeds == 2


def test_more_entries_than_the_kernels_table_holds_mean_the_index_drifted():
    flows = [from_source(EVENT_NEW_DIRECT, f"127.0.0.{n}") for n in range(1, 5)]
    index = flow_index([b"".join(flows)], limit=3)
    assert index.tuples_from("127.0.0.1") is None
    assert index.losses == 1 and len(index) == 0


def test_a_kick_asks_the_kernel_when_the_client_index_cannot_tell():
    adapter = ct_mod.Conntrack()
    dumped = []

    class Unsure:
        def tuples_from(self, ip):
            return None

    adapter.flows = Unsure()  # type: ignore[assignment]
    adapter.ct.entries_from = lambda ip: dumped.append(ip) or entries(3)  # type: ignore[method-assign]
    adapter.ct.delete = lambda found: len(found)  # type: ignore[method-assign]
    assert adapter.flush_client("127.0.0.7") == 3
    assert dumped == ["127.0.0.7"]


def test_a_kick_deletes_the_indexed_tuples_and_forgets_them():
    adapter = ct_mod.Conntrack()
    deleted, forgotten = [], []

    class Known:
        def tuples_from(self, ip):
            return [b"a", b"b"]

        def forget(self, ip, tuples):
            forgotten.append((ip, tuples))

    adapter.flows = Known()  # type: ignore[assignment]
    adapter.ct.entries_from = lambda ip: pytest.fail("dumped")  # type: ignore[method-assign]
    adapter.ct.delete_tuples = lambda t: deleted.extend(t) or len(t)  # type: ignore[method-assign]
    assert adapter.flush_client("127.0.0.7") == 2
    assert deleted == [b"a", b"b"] and forgotten == [("127.0.0.7", [b"a", b"b"])]
