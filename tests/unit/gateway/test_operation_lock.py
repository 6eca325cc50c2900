"""The engine's lock (gateway/operation_lock.py): a hold that raises after the kernel moved
asks for a whole look, once, at its outermost level; nothing else does."""

from __future__ import annotations

import threading

import pytest

from gateway.operation_lock import OperationLock


class Kernel:
    def __init__(self) -> None:
        self.generation = 0
        self.asked = 0

    def lock(self) -> OperationLock:
        return OperationLock(lambda: self.generation, self.ask)

    def ask(self) -> None:
        self.asked += 1


def test_a_hold_that_fails_after_the_kernel_moved_asks_for_a_whole_look():
    k = Kernel()
    lock = k.lock()
    with pytest.raises(RuntimeError), lock:
        k.generation += 2  # a change applied ...
        raise RuntimeError("... then the commit failed")
    assert k.asked == 1


def test_a_hold_that_fails_before_any_change_or_succeeds_asks_nothing():
    k = Kernel()
    lock = k.lock()
    with pytest.raises(RuntimeError), lock:
        raise RuntimeError("refused before the kernel")
    with lock:
        k.generation += 2
    assert k.asked == 0


def test_nested_holds_ask_once_from_the_outermost():
    k = Kernel()
    lock = k.lock()
    with pytest.raises(RuntimeError), lock:
        with lock:
            k.generation += 2
        with pytest.raises(ValueError), lock:
            raise ValueError("caught inside the operation")
        assert k.asked == 0, "an inner failure the operation handles is not its end"
        raise RuntimeError
    assert k.asked == 1


def test_it_is_a_lock_between_threads():
    k = Kernel()
    lock = k.lock()
    assert lock.acquire()
    got: list[bool] = []
    t = threading.Thread(target=lambda: got.append(lock.acquire(timeout=0.05)))
    t.start()
    t.join()
    assert got == [False]
    lock.release()
    t = threading.Thread(
        target=lambda: got.append(lock.acquire(timeout=1) and lock.release() is None)
    )
    t.start()
    t.join()
    assert got == [False, True]
