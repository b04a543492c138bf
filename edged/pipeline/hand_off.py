"""A bounded hand-off between two threads that passes everything queued in one go, and
the turn to write results that goes with it.

The infer thread hands its batches to the output thread through this. ``queue.Queue``
wakes the producer on every ``get`` that frees a slot and takes two condition variables
and a lock per item; at a few thousand batches a second those wake-ups, each a futex call
and a pass of the GIL between threads, cost more CPU than the work they hand over.
Here the consumer takes every queued item at once, and a producer waiting for room is
woken only once the consumer has taken everything, so a producer that got ahead refills
the queue in one stretch instead of one item per wake-up. Neither side is woken when
the other is not waiting.

Whoever writes results holds the *turn*: the consumer from ``take_all`` until ``done``,
or a producer that found nothing queued and nobody writing (``try_turn``) and so writes
its own item instead of queueing it. When the engine has nothing waiting, waking another
thread to write its result only adds that wake-up to the frame's latency. Items are
written in the order they were produced, one writer at a time: the consumer takes items
only when nobody holds the turn, and a producer takes the turn only when nothing older is
queued or being written.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Deque, Generic, List, TypeVar

__all__ = ["HandOff"]

T = TypeVar("T")

_POLL_S = 0.05


class HandOff(Generic[T]):
    """Up to ``bound`` items from producers to one consumer. Thread-safe."""

    def __init__(self, bound: int) -> None:
        self._bound = bound
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self._room = threading.Condition(self._lock)
        self._items: Deque[T] = deque()
        self._consumer_waiting = False
        self._producers_waiting = 0
        self._writing = False

    def put(self, item: T, abort: threading.Event) -> bool:
        """Queue ``item``, waiting while the hand-off is full; False (not queued) once
        ``abort`` is set while waiting."""
        with self._lock:
            while len(self._items) >= self._bound:
                if abort.is_set():
                    return False
                self._producers_waiting += 1
                self._room.wait(_POLL_S)
                self._producers_waiting -= 1
            self._items.append(item)
            if self._consumer_waiting:
                self._ready.notify()
            return True

    def take_all(self, timeout: float) -> List[T]:
        """Every queued item, oldest first, with the turn to write them (give it back with
        ``done``); waits up to ``timeout`` for an item while nobody writes (none: [])."""
        with self._lock:
            if not self._items or self._writing:
                self._consumer_waiting = True
                self._ready.wait(timeout)
                self._consumer_waiting = False
            if not self._items or self._writing:
                return []
            items = list(self._items)
            self._items.clear()
            self._writing = True
            if self._producers_waiting:
                self._room.notify_all()
            return items

    def try_turn(self) -> bool:
        """The turn to write, when nothing is queued and nobody writes; give it back with
        ``done``. False: queue the item (``put``) instead."""
        with self._lock:
            if self._items or self._writing:
                return False
            self._writing = True
            return True

    def done(self) -> None:
        """Give the turn back; the consumer is woken if items came in meanwhile."""
        with self._lock:
            self._writing = False
            if self._items and self._consumer_waiting:
                self._ready.notify()

    def empty(self) -> bool:
        with self._lock:
            return not self._items
