"""One ordered queue for every change to the running models.

Pushes, reloads (SIGHUP, ``cmd/reload``), plan rebuilds and restarts of stuck models all
run here, one at a time and in the order they arrived, on one worker thread. A reload
therefore reads the local file and the persisted push only after every change queued
before it has been persisted and put in force, so it can never roll a newer push back.
And no change runs on the main loop, which keeps telling systemd the daemon is alive
while a plan builds for minutes.
"""

from __future__ import annotations

import logging
import queue
import threading
from concurrent.futures import Future
from typing import Any, Callable, Optional, Set, Tuple, TypeVar

__all__ = ["ChangeQueue"]

log = logging.getLogger(__name__)

T = TypeVar("T")
_Job = Tuple[str, Callable[[], Any], "Future[Any]"]


class ChangeQueue:
    def __init__(self) -> None:
        self._jobs: queue.Queue[Optional[_Job]] = queue.Queue()
        self._lock = threading.Lock()
        self._thread: Optional[threading.Thread] = None
        self._pending: Set[str] = set()  # names of coalescing jobs queued and not yet started
        self.current: Optional[str] = None  # the job running now, for status and logs

    def _ensure_worker(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="edged-changes", daemon=True)
                self._thread.start()

    def submit(self, name: str, job: Callable[[], T], coalesce: bool = False) -> Optional["Future[T]"]:
        """Queue ``job``; its Future holds the result or the exception it raised.
        ``coalesce``: when a job of the same ``name`` is already waiting, do not queue
        another (a second SIGHUP while a reload waits adds nothing) and return None."""
        future: Future[T] = Future()
        with self._lock:
            if coalesce:
                if name in self._pending:
                    return None
                self._pending.add(name)
        self._ensure_worker()
        self._jobs.put((name, job, future))
        return future

    def run(self, name: str, job: Callable[[], T]) -> T:
        """Run ``job`` in turn and wait for it; inline when called from a queued job."""
        if threading.current_thread() is self._thread:
            return job()
        future = self.submit(name, job)
        assert future is not None
        return future.result()

    @property
    def busy(self) -> bool:
        return self.current is not None or not self._jobs.empty()

    def stop(self, timeout: float = 5.0) -> None:
        """Let the job in progress finish (up to ``timeout``); queued jobs are not run."""
        with self._lock:
            thread = self._thread
        if thread is None:
            return
        while True:
            try:
                item = self._jobs.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                item[2].cancel()
        self._jobs.put(None)
        thread.join(timeout)

    def _work(self) -> None:
        while True:
            item = self._jobs.get()
            if item is None:
                return
            name, job, future = item
            with self._lock:
                self._pending.discard(name)
            if not future.set_running_or_notify_cancel():
                continue
            self.current = name
            try:
                future.set_result(job())
            except Exception as exc:  # handed to the waiter; the queue outlives any job
                future.set_exception(exc)
            finally:
                self.current = None
