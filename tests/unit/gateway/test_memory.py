"""The gateway gives the allocator's freed memory back once an hour (hotspot/memory.py).

The soak found the gateway's bytes in use level while glibc's arenas kept 7–11 MB of freed
memory and their footprint crept up (docs/reliability.md, "A week in minutes").
"""

from __future__ import annotations

import gc
import subprocess
import sys

import pytest

from gateway.memory import collector_paused
from hotspot import config as config_mod
from hotspot.config import ConfigError
from hotspot.memory import TRIM_SECONDS, FreedMemory, MemoryCeiling, malloc_trim, resident_mb


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_allocator_is_trimmed_once_per_interval_of_monotonic_time():
    clock, calls = Clock(), []
    freed = FreedMemory(every=60, trim=lambda pad: calls.append(pad) or 1, monotonic=clock)
    assert not freed.due()  # not at start: the first trim an interval after it
    clock.now += 59.9
    assert not freed.due()
    clock.now += 0.1
    assert freed.due()
    assert calls == [0]  # malloc_trim(0): keep no padding at the top of the heap
    for _ in range(100):  # every tick of the next minute: nothing more
        clock.now += 0.5
        freed.due()
    assert calls == [0]
    clock.now += 10
    assert freed.due() is True
    assert freed.trims == 2


def test_a_clock_that_stands_still_or_a_wall_clock_jump_triggers_no_extra_trim():
    # Only monotonic time counts: the wall clock of a Pi without an RTC jumps by days (NTP),
    # and a burst of ticks after a stall runs the trim once, not once per missed interval.
    clock, calls = Clock(), []
    freed = FreedMemory(every=60, trim=lambda pad: calls.append(pad) or 0, monotonic=clock)
    for _ in range(1000):
        freed.due()
    assert calls == []
    clock.now += 3 * 86400  # a long stall (suspended, or starved)
    assert freed.due() is False  # trimmed; the allocator had nothing to give
    assert freed.due() is False
    assert len(calls) == 1


def test_without_malloc_trim_nothing_happens():
    freed = FreedMemory(every=0, trim=None, monotonic=Clock())
    freed.trim = None  # a C library without malloc_trim (musl)
    assert freed.due() is False
    assert freed.trims == 0


def test_the_default_interval_is_an_hour_and_glibc_has_the_function():
    assert TRIM_SECONDS == 3600
    assert malloc_trim() is not None  # Debian's glibc


def test_the_interval_is_a_setting_and_a_bad_one_is_refused(tmp_path):
    # A soak shorter than an hour shortens it (bench/soak.py); below 10 s is a mistake.
    db = {"url": f"sqlite:///{tmp_path}/h.db"}
    assert config_mod.load(overrides={"database": db}).gateway.trim_seconds == TRIM_SECONDS
    cfg = config_mod.load(overrides={"database": db, "gateway": {"trim_seconds": 300}})
    assert cfg.gateway.trim_seconds == 300
    for bad in (0, 5, "hourly", 10**6):
        with pytest.raises(ConfigError) as err:
            config_mod.load(overrides={"database": db, "gateway": {"trim_seconds": bad}})
        assert "gateway.trim_seconds" in str(err.value)


FREED_BY_A_THREAD = """
import threading
from hotspot.memory import malloc_trim

def rss_kb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])

kept = []
def work():
    # 64 KiB blocks (below the mmap threshold: inside the thread's malloc arena), all freed
    # but the last, which pins the top of the heap so that free() alone cannot shrink it.
    blocks = [bytearray(64 << 10) for _ in range(400)]
    kept.append(blocks.pop())
    del blocks

t = threading.Thread(target=work)
t.start()
t.join()
before = rss_kb()
released = malloc_trim()(0)
print(before, rss_kb(), released)
"""


def test_malloc_trim_gives_back_what_a_thread_freed():
    run = subprocess.run(
        [sys.executable, "-c", FREED_BY_A_THREAD],
        capture_output=True,
        text=True,
        env={"MALLOC_ARENA_MAX": "2", "PATH": "/usr/bin:/bin", "PYTHONPATH": "."},
        timeout=60,
        check=True,
    )
    before, after, released = map(int, run.stdout.split())
    assert released == 1
    assert before - after > 10_000, (before, after)  # of the 25 MB freed, most goes back


def test_the_daemons_tick_asks_for_the_trim(tmp_path):
    from types import SimpleNamespace

    from gateway.daemon import Gateway
    from hotspot import config as config_mod

    overrides = {
        "database": {"url": f"sqlite:///{tmp_path}/hotspot.db"},
        "control": {"socket": str(tmp_path / "control.sock")},
    }
    gw = Gateway(config_mod.load(overrides=overrides))
    assert isinstance(gw.freed_memory, FreedMemory)
    assert gw.freed_memory.every == TRIM_SECONDS
    clock, calls = Clock(), []
    gw.freed_memory = FreedMemory(every=60, trim=lambda p: calls.append(p) or 1, monotonic=clock)
    gw.engine = SimpleNamespace(tick=lambda: SimpleNamespace(ended=[]))  # type: ignore[assignment]
    gw._tick()
    clock.now += 60
    gw._tick()
    gw._tick()
    assert calls == [0]


# -- the ceiling: past [gateway] restart_above_mb the daemon stops to be started again -------


class Resident:
    def __init__(self, *sizes: float) -> None:
        self.sizes = list(sizes)

    def __call__(self) -> float:
        return self.sizes.pop(0) if len(self.sizes) > 1 else self.sizes[0]


def test_the_ceiling_is_crossed_only_by_what_a_trim_does_not_give_back():
    trims: list[int] = []

    def trim(pad: int) -> int:
        trims.append(pad)
        return 1

    assert MemoryCeiling(256, Resident(255.9), trim).exceeded() is None
    assert trims == []  # below the ceiling: no trim, one read of /proc
    assert MemoryCeiling(256, Resident(300.0, 250.0), trim).exceeded() is None
    assert trims == [0]  # glibc's free pages were the excess: given back, no restart
    assert MemoryCeiling(256, Resident(300.0, 280.0), trim).exceeded() == 280.0
    assert MemoryCeiling(256, Resident(300.0), None).exceeded() == 300.0  # musl: no trim


def test_a_ceiling_of_zero_is_off():
    reads: list[float] = []

    def resident() -> float:
        reads.append(1)
        return 10_000.0

    assert MemoryCeiling(0, resident).exceeded() is None
    assert reads == []


def test_the_resident_size_is_this_processes():
    size = resident_mb()
    status = next(ln for ln in open("/proc/self/status") if ln.startswith("VmRSS:"))
    assert abs(size - int(status.split()[1]) / 1024) < 8  # read a moment apart


def test_the_ceiling_is_a_setting_and_a_mistake_of_units_is_refused(tmp_path):
    db = {"url": f"sqlite:///{tmp_path}/h.db"}
    assert config_mod.load(overrides={"database": db}).gateway.restart_above_mb == 256
    for good in (0, 32, 512):
        cfg = config_mod.load(overrides={"database": db, "gateway": {"restart_above_mb": good}})
        assert cfg.gateway.restart_above_mb == good
    for bad in (1, 31, -1, 16385, "256M", 2.5, True):
        with pytest.raises(ConfigError) as err:
            config_mod.load(overrides={"database": db, "gateway": {"restart_above_mb": bad}})
        assert "gateway.restart_above_mb" in str(err.value)


def test_a_bad_ceiling_in_the_file_is_one_line_and_exit_2(tmp_path):
    conf = tmp_path / "hotspot.toml"
    conf.write_text("[gateway]\nrestart_above_mb = 16\n")
    run = subprocess.run(
        [sys.executable, "-m", "hotspot_cli", "--config", str(conf), "gateway", "run"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 2
    assert run.stderr.strip().splitlines() == [
        "hotspot: config error: gateway.restart_above_mb: must be 0 (off) or at least 32, got 16"
    ], run.stderr


# -- the cyclic collector during a tick (issue #12, item 4) ----------------------------------


def test_the_collector_is_paused_for_the_block_and_the_young_generation_collected_after():
    collected: list[tuple[str, int]] = []

    def seen(phase: str, info: dict) -> None:
        collected.append((phase, info["generation"]))

    assert gc.isenabled()
    gc.callbacks.append(seen)
    try:
        with collector_paused():
            assert not gc.isenabled()
            garbage = [[] for _ in range(50_000)]  # far past the young threshold
            del garbage
            assert collected == []  # nothing collected inside, whatever was allocated
        assert gc.isenabled()
        assert ("start", 0) in collected and not any(g == 2 for _p, g in collected)
        with pytest.raises(RuntimeError), collector_paused():
            raise RuntimeError("a tick that fails")
        assert gc.isenabled()  # on again all the same
    finally:
        gc.callbacks.remove(seen)


def test_a_collector_already_off_is_left_off():
    gc.disable()
    try:
        with collector_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_a_tick_makes_no_full_collection(engine, datapath):
    # A /22's thousand sessions: a tick makes enough objects to have promoted them into a
    # full collection before (bench/README.md, "The tick at 10,000 sessions").
    import ipaddress

    from hotspot.model import Source

    for i, host in enumerate(list(ipaddress.ip_network("10.10.0.0/22").hosts())[1:1001]):
        ip = str(host)
        mac = f"02:10:00:00:{i >> 8:02x}:{i & 255:02x}"
        engine.authorize(ip=ip, mac=mac, tier="free", source=Source.FREE)
        datapath.traffic(ip, down=1500, up=100)
    generations: list[int] = []

    def seen(phase: str, info: dict) -> None:
        if phase == "start":
            generations.append(info["generation"])

    gc.callbacks.append(seen)
    try:
        for _ in range(5):
            engine.tick(force_flush=True)
    finally:
        gc.callbacks.remove(seen)
    assert generations == [0] * 5  # one young collection after each tick, nothing else
