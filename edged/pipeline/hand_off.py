"""A bounded hand-off between two threads that passes everything queued in one go.

The infer thread hands its batches to the output thread through this. ``queue.Queue``
wakes the producer on every ``get`` that frees a slot and takes two condition variables
and a lock per item; at a few thousand batches a second those wake-ups, each a futex call
and a pass of the GIL between threads, cost more CPU than the work they hand over.
Here the consumer takes every queued item at once, and a producer waiting for room is
woken only once the consumer has taken everything, so a producer that got ahead refills
the queue in one stretch instead of one item per wake-up. Neither side is woken when
the other is not waiting.
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
        """Every queued item, oldest first; waits up to ``timeout`` for one (none: [])."""
        with self._lock:
            if not self._items:
                self._consumer_waiting = True
                self._ready.wait(timeout)
                self._consumer_waiting = False
            items = list(self._items)
            self._items.clear()
            if items and self._producers_waiting:
                self._room.notify_all()
            return items

    def empty(self) -> bool:
        with self._lock:
            return not self._items
