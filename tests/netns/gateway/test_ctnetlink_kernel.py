"""The small ctnetlink client against the real kernel: a hostile villager's thousands of
flows are all found (a dump of many datagrams) and all deleted (many deletions per send),
another client's are left alone, and deleting them again is no error."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

SCRIPT = """
import json, socket
from gateway.ctnetlink import CtNetlink

socks = []
def flows(src, n):
    for i in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((src, 0))
        s.sendto(b"q", ("127.0.0.1", 53))
        socks.append(s)

flows("127.0.0.7", 1500)  # the hostile villager: 1,500 lookups, each from a new port
flows("127.0.0.8", 5)     # someone else
client = CtNetlink()
found = client.entries_from("127.0.0.7")
others = client.entries_from("127.0.0.8")
deleted = client.delete(found)
print(json.dumps({
    "found": len(found),
    "sources": sorted({e.tuple_orig.saddr for e in found}),
    "dports": sorted({e.tuple_orig.dport for e in found}),
    "deleted": deleted,
    "left": len(client.entries_from("127.0.0.7")),
    "others": len(others),
    "others_after": len(client.entries_from("127.0.0.8")),
    "deleted_again": client.delete(found),
}))
client.close()
"""


def test_a_thousand_flows_of_one_client_are_found_and_forgotten():
    ns = f"hstct{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        # Any rule that uses conntrack makes the namespace track its connections.
        ruleset = (
            "table ip t {\n chain c {\n type filter hook output priority 0; ct state new\n }\n}\n"
        )
        subprocess.run(
            ["ip", "netns", "exec", ns, "nft", "-f", "-"], input=ruleset.encode(), check=True
        )
        proc = subprocess.run(
            ["ip", "netns", "exec", ns, sys.executable, "-c", SCRIPT],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)
    result = json.loads(proc.stdout)
    assert result == {
        "found": 1500,
        "sources": ["127.0.0.7"],
        "dports": [53],
        "deleted": 1500,
        "left": 0,
        "others": 5,
        "others_after": 5,
        "deleted_again": 0,
    }
