"""One model's continuous inference: three threads joined by bounded queues.

    source thread:  read frame -> preprocess -> in-queue   (drop-oldest if live, else block)
    infer thread:   in-queue -> batch (max size, max wait) -> runner.infer -> out-queue
    output thread:  out-queue -> postprocess -> sink

A model placed on several engines (one per DLA core, say) has one infer thread per engine,
all taking batches from the same in-queue; their batches can then reach the sink out of
order (each record carries the frame's ``seq``).

Preprocessing the next frames overlaps inference of the current batch, and ONNX Runtime
and TensorRT release the GIL while they run. Every frame the source yields is counted in
``frames_in`` and ends either written (``frames_out``) or dropped with a reason, so
``frames_in == frames_out + sum(dropped)`` once the pipeline has stopped.
"""

from __future__ import annotations

import functools
import logging
import queue
import threading
import time
from collections import deque
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from edged.backends.base import Runner
from edged.config.model import ModelConfig
from edged.errors import ConfigError, EdgedError
from edged.pipeline.frame import Frame
from edged.pipeline.postprocess import create_postprocessor
from edged.pipeline.preprocess import Preprocessor
from edged.pipeline.repeated_errors import RepeatedErrors
from edged.pipeline.sinks import create_sink
from edged.pipeline.sources import create_source
from edged.pipeline.stats import ModelStats

__all__ = ["ModelPipeline"]

log = logging.getLogger(__name__)

_POLL_S = 0.05
_ABANDON_JOIN_S = 0.5  # a few polls: how long abandon() waits for each thread that still listens
Batch = Tuple[List[Frame], Dict[str, np.ndarray], float]


class ModelPipeline:
    def __init__(
        self,
        model: ModelConfig,
        runner: Runner,
        stats: Optional[ModelStats] = None,
        extra_runners: Sequence[Runner] = (),
    ) -> None:
        self.model = model
        self.runner = runner
        # ``runner`` and ``extra_runners`` are engine instances of the same model (its tensor
        # specs come from ``runner``); each gets an infer thread.
        self.runners: List[Runner] = [runner, *extra_runners]
        self.stats = stats or ModelStats()
        if len(runner.inputs) != 1:
            names = ", ".join(spec.name for spec in runner.inputs)
            raise ConfigError(
                f"models: {model.name!r} has {len(runner.inputs)} inputs ({names}); one image input is supported"
            )
        self._input = runner.inputs[0]
        self.preprocess = Preprocessor(model.preprocess, self._input)
        self._batch_capacity = self._check_batch(model.batch)
        self.source = create_source(model.source, self.preprocess.hw)
        self.source.skipped = self._count_skipped
        self.postprocess = create_postprocessor(model.postprocess, runner.outputs, self.preprocess.hw)
        self.sink = create_sink(model.sink)
        self._in: queue.Queue[Frame] = queue.Queue(model.queue_size)
        self._out: queue.Queue[Batch] = queue.Queue(4)
        self._stop_source = threading.Event()
        self._abort = threading.Event()
        self._abandoned = False  # see abandon(): its frames are counted once, as 'stalled'
        self._errors = RepeatedErrors(log, model.name)

        self._source_done = threading.Event()
        self._infer_done = threading.Event()
        self._infer_running = len(self.runners)
        self._infer_lock = threading.Lock()
        self._threads: List[threading.Thread] = []
        self.state = "created"
        self.plan_key: Optional[Any] = None  # the plan cache key of the runner, set by the daemon
        self.extra_plan_keys: List[Any] = []  # those of the extra runners
        self.devices: List[str] = []  # the device of each runner, set by the daemon
        self.results_hook: Optional[Callable[[Dict[str, Any]], None]] = None  # e.g. rate-limited MQTT results
        self.error: Optional[str] = None
        # Heartbeats (time.monotonic()) of the infer and output workers, stamped on every
        # batch and every idle poll. The source thread has none: a camera may rightly be
        # quiet for hours, and that is the source's state, not a hang.
        self._beats: Dict[str, float] = {}
        self._buffers = [
            np.zeros((self._batch_capacity, *self.preprocess.sample_shape), dtype=self.preprocess.dtype)
            for _ in self.runners
        ]
        # Sample tensors are recycled: a fresh multi-hundred-KB array per frame costs an
        # mmap and page faults, measurable against a few-ms inference.
        in_flight = self._batch_capacity * len(self.runners)
        self._pool: "deque[np.ndarray]" = deque(maxlen=model.queue_size + in_flight + 2)

    def _check_batch(self, batch: int) -> int:
        fixed = self._input.shape[0] if self._input.shape else None
        if fixed is not None and batch > fixed:
            raise ConfigError(f"models: {self.model.name!r} batch {batch} exceeds the model's fixed batch {fixed}")
        # A fixed batch dimension is padded; a dynamic one runs with the frames at hand.
        self._pad = fixed is not None
        return fixed if fixed is not None else batch

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        self.source.open()
        self.state = "running"
        loops: List[Tuple[str, Callable[[], None]]] = [("source", self._source_loop)]
        for index in range(len(self.runners)):
            name = "infer" if len(self.runners) == 1 else f"infer{index}"
            loops.append((name, functools.partial(self._infer_loop, index)))
        loops.append(("output", self._output_loop))
        now = time.monotonic()
        for name, target in loops:
            thread = threading.Thread(target=target, name=f"edged-{self.model.name}-{name}", daemon=True)
            if name != "source":
                self._beats[thread.name] = now
            self._threads.append(thread)
            thread.start()

    def stop(self, timeout: float = 4.0) -> bool:
        """Stop the source, drain queued frames, and close. True when drained in time;
        otherwise what was still queued or in flight is counted as dropped ('shutdown')."""
        deadline = time.monotonic() + timeout
        self._stop_source.set()
        self.state = "draining"
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        drained = not any(t.is_alive() for t in self._threads)
        if not drained:
            self._abort.set()
            for thread in self._threads:
                thread.join(0.5)
        self._finish()
        return drained

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Wait for a finite source to be fully processed; True when it was."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in self._threads:
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in self._threads)

    def stop_source(self) -> None:
        """Ask the source to stop without waiting: the first step of a drain, so several
        pipelines can drain in parallel before each one's ``stop``."""
        self._stop_source.set()

    @property
    def finished(self) -> bool:
        """Every thread of a started pipeline has ended (a finite source fully processed,
        or a stop)."""
        return bool(self._threads) and not any(t.is_alive() for t in self._threads)

    @property
    def last_progress(self) -> float:
        """The oldest heartbeat among the infer and output workers still running: how long
        ago the most stalled worker last showed life (time.monotonic()). A worker stuck in
        an engine call or a sink write stops beating; an idle one keeps beating."""
        alive = [self._beats[t.name] for t in self._threads if t.name in self._beats and t.is_alive()]
        return min(alive) if alive else time.monotonic()

    def abandon(self, reason: str) -> None:
        """Give up on a pipeline whose worker is stuck (see ModelSet.restart): stop its
        source and threads where they still listen, and count what it held as dropped
        (``reason``). Its engines are not closed: a thread may still be inside one, and
        freeing an engine under a running call crashes native code; the memory is the
        price of keeping the other models serving."""
        self._stop_source.set()
        self._abort.set()
        self.state = "failed"
        self.error = reason
        # The threads that still listen end within a poll; counting waits for them so that
        # no frame is counted twice. A stuck thread that returns later counts nothing more.
        for thread in self._threads:
            thread.join(_ABANDON_JOIN_S)
        self._abandoned = True
        counters = self.stats.counters()
        unaccounted = int(counters["frames_in"]) - int(counters["frames_out"]) - sum(counters["dropped"].values())
        if unaccounted > 0:
            self.stats.count_drop("stalled", unaccounted)

    def _beat(self) -> None:
        self._beats[threading.current_thread().name] = time.monotonic()

    @property
    def source_finished(self) -> bool:
        """The source thread has ended: its input is exhausted, it failed, or it was stopped.
        A source that is merely quiet (a camera between frames) is not finished."""
        return self._source_done.is_set()

    def _finish(self) -> None:
        counters = self.stats.counters()
        dropped = sum(counters["dropped"].values())
        unaccounted = int(counters["frames_in"]) - int(counters["frames_out"]) - dropped
        if unaccounted > 0:
            self.stats.count_drop("shutdown", unaccounted)
        try:
            self.sink.close()
        except OSError as exc:
            log.error("model %s: closing sink failed: %s", self.model.name, exc)
        self.source.close()
        self.close_runners()
        if self.state != "failed":
            self.state = "stopped"

    def close_runners(self) -> None:
        for runner in self.runners:
            runner.close()

    def _count_skipped(self, reason: str) -> None:
        self.stats.count_in()
        self.stats.count_drop(reason)

    def _fail(self, message: str) -> None:
        self.error = message
        self.state = "failed"
        log.error("model %s: %s", self.model.name, message)

    # -- threads -----------------------------------------------------------------------

    def _source_loop(self) -> None:
        try:
            while not self._stop_source.is_set():
                frame = self.source.read(self._stop_source)
                if frame is None:
                    break
                self.stats.count_in()
                start = time.perf_counter()
                frame.tensor = self.preprocess(frame.image, self._take_tensor(), frame.meta)
                frame.preprocess_ms = (time.perf_counter() - start) * 1000.0
                frame.enqueue_ts = time.monotonic()
                self._enqueue(frame)
        except EdgedError as exc:
            self._fail(str(exc))
        except Exception as exc:  # keep the other models serving; report this one
            log.exception("model %s: source failed", self.model.name)
            self._fail(f"source failed: {exc}")
        finally:
            self._source_done.set()

    def _take_tensor(self) -> np.ndarray:
        try:
            return self._pool.pop()
        except IndexError:
            fresh: np.ndarray = np.empty(self.preprocess.sample_shape, dtype=self.preprocess.dtype)
            return fresh

    def _batch_input(self, frames: List[Frame], buffer: np.ndarray) -> np.ndarray:
        """The batch tensor (in ``buffer``, the infer thread's own); a single frame on a
        dynamic batch axis goes in without a copy."""
        n = len(frames)
        if n == 1 and not self._pad:
            tensor = frames[0].tensor
            assert tensor is not None
            single: np.ndarray = tensor[None]
            return single
        for i, frame in enumerate(frames):
            buffer[i] = frame.tensor
        batch: np.ndarray = buffer if self._pad else buffer[:n]
        return batch

    def _recycle(self, frames: List[Frame]) -> None:
        for frame in frames:
            if frame.tensor is not None:
                self._pool.append(frame.tensor)
                frame.tensor = None

    def _enqueue(self, frame: Frame) -> None:
        if self.source.live:
            while True:
                try:
                    self._in.put_nowait(frame)
                    return
                except queue.Full:
                    try:
                        self._in.get_nowait()
                        self.stats.count_drop("queue_full")
                    except queue.Empty:
                        pass
        while not self._abort.is_set():
            try:
                self._in.put(frame, timeout=_POLL_S)
                return
            except queue.Full:
                continue
        self.stats.count_drop("shutdown")

    def _collect(self) -> List[Frame]:
        try:
            first = self._in.get(timeout=_POLL_S)
        except queue.Empty:
            return []
        frames = [first]
        deadline = time.monotonic() + self.model.max_wait_ms / 1000.0
        while len(frames) < self.model.batch:
            remaining = deadline - time.monotonic()
            try:
                frames.append(self._in.get_nowait() if remaining <= 0 else self._in.get(timeout=remaining))
            except queue.Empty:
                break
        return frames

    def _infer_loop(self, index: int = 0) -> None:
        runner, buffer = self.runners[index], self._buffers[index]
        latency = self.stats.latency
        try:
            while not self._abort.is_set():
                frames = self._collect()
                if not frames:
                    if self._source_done.is_set() and self._in.empty():
                        break
                    self._beat()
                    continue
                start = time.monotonic()
                n = len(frames)
                for frame in frames:
                    latency["queue_wait"].record((start - frame.enqueue_ts) * 1000.0, start)
                    latency["preprocess"].record(frame.preprocess_ms, start)
                try:
                    outputs = runner.infer({self._input.name: self._batch_input(frames, buffer)})
                except Exception as exc:
                    self._errors.error("inference", exc)
                    if not self._abandoned:
                        self.stats.count_drop("inference_error", n)
                    continue
                finally:
                    self._recycle(frames)
                done = time.monotonic()
                timings = runner.last_timings
                latency["inference"].record(
                    timings.compute_ms if timings.compute_ms is not None else (done - start) * 1000.0, done
                )
                self.stats.count_batch(n)
                self._beat()
                self._hand_over((frames, outputs, done))
        finally:
            with self._infer_lock:
                self._infer_running -= 1
                if self._infer_running == 0:
                    self._infer_done.set()

    def _hand_over(self, item: Batch) -> None:
        while not self._abort.is_set():
            try:
                self._out.put(item, timeout=_POLL_S)
                return
            except queue.Full:
                continue
        if not self._abandoned:
            self.stats.count_drop("shutdown", len(item[0]))

    def _output_loop(self) -> None:
        latency = self.stats.latency
        name = self.model.name
        while not self._abort.is_set():
            try:
                frames, outputs, _ = self._out.get(timeout=_POLL_S)
            except queue.Empty:
                if self._infer_done.is_set() and self._out.empty():
                    break
                self._beat()
                continue
            for index, frame in enumerate(frames):
                start = time.monotonic()
                try:
                    result = self.postprocess(outputs, index, frame)
                except Exception as exc:
                    self._errors.error("postprocess", exc)
                    self.stats.count_drop("postprocess_error")
                    continue
                post_done = time.monotonic()
                record = {"model": name, "seq": frame.seq, "origin": frame.origin, "ts": time.time()}
                record.update(result)
                try:
                    self.sink.write(record)
                except (OSError, ValueError) as exc:
                    self._errors.error("sink write", exc)
                    if not self._abandoned:
                        self.stats.count_drop("sink_error")
                    continue
                if self._abandoned:  # a write stuck until after abandon(): already counted
                    return
                if self.results_hook is not None:
                    self.results_hook(record)
                end = time.monotonic()
                latency["postprocess"].record((post_done - start) * 1000.0, end)
                latency["e2e"].record((end - frame.capture_ts) * 1000.0, end)
                self.stats.count_out()
            self._beat()
