"""The last counter reading of every client class, both devices, kept between ticks.

A class's bytes and packets are what the kernel has counted since the class was made; a tick
charges a session the difference from the class's last reading. The pool's classes outlive
their sessions, so a reading is kept for every class the gateway has read, idle ones too:
a session that takes one later counts from it. On a /18 that is 2 × 16,381 classes; as a
dict of ``(direction, minor)`` tuples to ``(bytes, packets)`` tuples it held 5.6 MB of the
gateway's memory at any number of sessions (bench/README.md, "Memory at 10,000 sessions").
Here it is four arrays indexed by the class minor (16 bits): 2 MB whatever the LAN, and a
class never read reads as (0, 0), as a new class's counters are.
"""

from __future__ import annotations

from array import array

MINORS = 1 << 16  # a class minor is 16 bits (gateway/shaping.py)


class LastReadings:
    """(bytes, packets) of the last reading of each class, by direction and minor."""

    __slots__ = ("_bytes", "_packets")

    def __init__(self) -> None:
        zeros = bytes(8 * MINORS)
        self._bytes = {d: array("Q", zeros) for d in ("down", "up")}
        self._packets = {d: array("Q", zeros) for d in ("down", "up")}

    def get(self, direction: str, minor: int) -> tuple[int, int]:
        return self._bytes[direction][minor], self._packets[direction][minor]

    def set(self, direction: str, minor: int, nbytes: int, packets: int) -> None:
        self._bytes[direction][minor] = nbytes
        self._packets[direction][minor] = packets
