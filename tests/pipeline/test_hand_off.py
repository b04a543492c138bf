"""The infer thread's hand-off to the output thread (edged/pipeline/hand_off.py)."""

from __future__ import annotations

import threading
import time
from typing import List

from edged.pipeline.hand_off import HandOff


def test_the_consumer_takes_everything_queued_in_order() -> None:
    hand_off: HandOff[int] = HandOff(4)
    for item in range(3):
        assert hand_off.put(item, threading.Event())
    assert hand_off.take_all(0) == [0, 1, 2]
    hand_off.done()
    assert hand_off.empty() and hand_off.take_all(0) == []


def test_a_waiting_consumer_gets_the_next_item_as_it_comes() -> None:
    hand_off: HandOff[str] = HandOff(4)
    threading.Timer(0.05, hand_off.put, args=("late", threading.Event())).start()
    started = time.monotonic()
    assert hand_off.take_all(5.0) == ["late"]
    assert time.monotonic() - started < 4.0


def test_a_full_hand_off_holds_the_producer_until_the_consumer_takes() -> None:
    hand_off: HandOff[int] = HandOff(2)
    abort = threading.Event()
    assert hand_off.put(0, abort) and hand_off.put(1, abort)
    done: List[bool] = []
    producer = threading.Thread(target=lambda: done.append(hand_off.put(2, abort)))
    producer.start()
    producer.join(0.2)
    assert producer.is_alive() and not done  # still waiting for room
    assert hand_off.take_all(0) == [0, 1]
    hand_off.done()
    producer.join(5.0)
    assert done == [True] and hand_off.take_all(0) == [2]


def test_a_producer_waiting_for_room_gives_up_on_abort() -> None:
    hand_off: HandOff[int] = HandOff(1)
    abort = threading.Event()
    assert hand_off.put(0, abort)
    threading.Timer(0.1, abort.set).start()
    assert not hand_off.put(1, abort)
    assert hand_off.take_all(0) == [0]


def test_a_producer_writes_its_own_item_only_when_nothing_is_queued_or_being_written() -> None:
    hand_off: HandOff[int] = HandOff(4)
    abort = threading.Event()
    assert hand_off.try_turn()  # nothing queued, nobody writing: the producer writes
    assert not hand_off.try_turn()  # one writer at a time
    assert hand_off.put(1, abort)
    assert hand_off.take_all(0) == []  # the producer still writes item 0: 1 must wait
    hand_off.done()
    assert hand_off.take_all(0) == [1]
    assert not hand_off.try_turn()  # the consumer writes 1: a newer item must queue behind it
    assert hand_off.put(2, abort)
    hand_off.done()
    assert not hand_off.try_turn()  # 2 is queued: older than whatever the producer holds
    assert hand_off.take_all(0) == [2]
    hand_off.done()
    assert hand_off.try_turn()


def test_giving_the_turn_back_wakes_a_consumer_waiting_on_queued_items() -> None:
    hand_off: HandOff[int] = HandOff(4)
    assert hand_off.try_turn()
    assert hand_off.put(7, threading.Event())
    threading.Timer(0.05, hand_off.done).start()
    started = time.monotonic()
    taken: List[int] = []
    while not taken and time.monotonic() - started < 4.0:
        taken = hand_off.take_all(5.0)
    assert taken == [7] and time.monotonic() - started < 4.0
