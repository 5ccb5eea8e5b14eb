"""run_each: quick work stays in the calling thread, slow work is spread over threads."""

from __future__ import annotations

import threading
import time

import pytest

from pluginkit._fanout import run_each


def test_quick_items_run_in_the_calling_thread_in_order() -> None:
    seen: list[tuple[int, str]] = []
    run_each(lambda i: seen.append((i, threading.current_thread().name)), range(500))
    assert seen == [(i, threading.current_thread().name) for i in range(500)]


def test_slow_items_overlap_in_up_to_workers_threads() -> None:
    lock = threading.Lock()
    running = 0
    most = 0
    threads: set[str] = set()

    def slow(_: int) -> None:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
            threads.add(threading.current_thread().name)
        time.sleep(0.05)
        with lock:
            running -= 1

    started = time.monotonic()
    run_each(slow, range(40), workers=8, slow=0.01, name="fan")
    elapsed = time.monotonic() - started
    # Two items alone, then 38 over 8 threads: 7 rounds of 50 ms, far below 40 x 50 ms.
    assert most == 8
    assert len(threads) == 8
    assert {t for t in threads if t.startswith("fan-")} == {f"fan-{i}" for i in range(7)}
    assert elapsed < 40 * 0.05 / 2


def test_helpers_never_outnumber_the_items_left() -> None:
    names: set[str] = set()

    def item(i: int) -> None:
        names.add(threading.current_thread().name)
        if i < 2:
            time.sleep(0.02)

    run_each(item, range(4), workers=16, slow=0.001, name="few")
    # Two items were left when the first two proved slow: at most two helpers.
    assert 1 <= len(names - {threading.current_thread().name}) <= 2


def test_one_slow_item_among_quick_ones_starts_no_thread() -> None:
    """A stall of one item (the scheduler, the kernel) is not a trend: no threads for it."""
    seen: list[str] = []

    def item(i: int) -> None:
        seen.append(threading.current_thread().name)
        if i % 100 == 50:  # a stall now and then, never two in a row
            time.sleep(0.01)

    run_each(item, range(400), slow=0.002)
    assert seen == [threading.current_thread().name] * 400


def test_two_slow_items_in_a_row_start_the_helpers() -> None:
    seen: list[tuple[int, str]] = []

    def item(i: int) -> None:
        seen.append((i, threading.current_thread().name))
        if i in (3, 4):
            time.sleep(0.01)
        elif i >= 5:
            time.sleep(0.05)  # long enough for the helpers to start and take some

    run_each(item, range(8), workers=3, slow=0.002, name="pair")
    me = threading.current_thread().name
    assert seen[:5] == [(i, me) for i in range(5)]  # in order, in this thread, until the pair
    assert sorted(i for i, _ in seen) == list(range(8))
    assert {name for _, name in seen} <= {me, "pair-0", "pair-1"}
    assert {name for _, name in seen[5:]} & {"pair-0", "pair-1"}


def test_every_item_runs_and_the_first_error_is_raised() -> None:
    done: list[int] = []

    def fail_odd(i: int) -> None:
        done.append(i)
        if i % 2:
            raise ValueError(f"item {i}")

    with pytest.raises(ValueError, match=r"^item 1$"):
        run_each(fail_odd, range(10))
    assert sorted(done) == list(range(10))


def test_a_keyboard_interrupt_stops_handing_out_items() -> None:
    done: list[int] = []

    def interrupt_at_3(i: int) -> None:
        if i == 3:
            raise KeyboardInterrupt
        done.append(i)

    with pytest.raises(KeyboardInterrupt):
        run_each(interrupt_at_3, range(10))
    assert done == [0, 1, 2]


def test_no_items_is_nothing() -> None:
    run_each(lambda _: pytest.fail("called"), [])
