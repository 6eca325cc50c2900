"""The last reading of every class (gateway/last_readings.py, issue #12 item 3): arrays by
minor instead of a dict of tuples — the pool's 2 × 16,381 idle classes of a /18 held 5.6 MB
that way."""

from __future__ import annotations

import sys

from gateway.last_readings import MINORS, LastReadings


def test_a_class_never_read_reads_as_zero_and_the_directions_are_apart():
    last = LastReadings()
    assert last.get("down", 0x2A) == (0, 0)
    last.set("down", 0x2A, 10**12, 2**32 - 1)
    assert last.get("down", 0x2A) == (10**12, 2**32 - 1)
    assert last.get("up", 0x2A) == (0, 0)
    last.set("up", MINORS - 1, 5, 1)  # the largest minor a class can have
    assert last.get("up", MINORS - 1) == (5, 1)
    last.set("down", 0x2A, 0, 0)  # a new class counts from zero
    assert last.get("down", 0x2A) == (0, 0)


def test_its_size_is_fixed_and_a_third_of_the_pools_dict():
    last = LastReadings()
    arrays = [*last._bytes.values(), *last._packets.values()]
    size = sum(sys.getsizeof(a) for a in arrays)
    assert size < 2.2 * 2**20
    for minor in range(2, 16_383):  # a /18's pool, both directions
        last.set("down", minor, 10**9 + minor, minor)
        last.set("up", minor, 10**8 + minor, minor)
    assert sum(sys.getsizeof(a) for a in arrays) == size
