"""One model's continuous inference: a reader thread per source, then batches for the engine.

    source threads: read frame -> preprocess -> its own lane   (drop-oldest if live, else wait)
    infer thread:   lanes -> batch round-robin (max size, max wait) -> runner.infer -> out-queue
    next-batch helper (batches of more than one frame): during runner.infer, a whole batch
                    already queued -> the spare batch tensor (edged/pipeline/next_batch.py)
    output thread:  out-queue -> postprocess -> sink; when the pipeline is quiet, the sink's flush
    (an infer thread with no frame waiting writes its own batch instead: edged/pipeline/hand_off.py)

A model has one or more sources (``sources:``, or ``source:`` for one); all of them feed the
same engine(s), and a batch mixes their frames fairly (edged/pipeline/fair_queue.py states the
policy). Each source reads on its own thread (edged/pipeline/source_feed.py), so one that
stalls or reconnects holds up only itself. Sources can be added, removed or changed while
the model runs (:meth:`ModelPipeline.prepare_sources`), without touching the engine.

A model placed on several engines (one per DLA core, say) has one infer thread per engine,
all taking batches from the same lanes; their batches can then reach the sink out of
order (each record carries its source's id and the frame's ``seq``).

Preprocessing the next frames overlaps inference of the current batch, and ONNX Runtime
and TensorRT release the GIL while they run. Every frame a source yields is counted in
``frames_in`` (in total and for its source) and ends either written (``frames_out``) or
dropped with a reason, so ``frames_in == frames_out + sum(dropped)`` once the pipeline has
stopped, for the model and for each source.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from edged.backends.base import Runner
from edged.config.model import ModelConfig
from edged.errors import ConfigError
from edged.pipeline.batch_tensors import BatchTensors
from edged.pipeline.fair_queue import FairQueue
from edged.pipeline.frame import Frame
from edged.pipeline.hand_off import HandOff
from edged.pipeline.next_batch import NextBatch, Prepared
from edged.pipeline.postprocess import create_postprocessor
from edged.pipeline.preprocess import Preprocessor
from edged.pipeline.repeated_errors import RepeatedErrors
from edged.pipeline.sinks import ResultsHeld, create_sink
from edged.pipeline.source_feed import FeedParts
from edged.pipeline.source_set import SourceEdit, SourceSet
from edged.pipeline.sources import Source
from edged.pipeline.stats import ModelStats

__all__ = ["ModelPipeline", "SourceEdit"]  # SourceEdit: what prepare_sources returns

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
        self.tensors = BatchTensors(model, self._input, self.preprocess, len(self.runners))
        self._lanes = FairQueue()
        self._out: HandOff[Batch] = HandOff(4)
        self._abort = threading.Event()
        self._abandoned = False  # see abandon(): its frames are counted once, as 'stalled'
        self._errors = RepeatedErrors(log, model.name)
        self._infer_done = threading.Event()
        self._infer_running = len(self.runners)
        self._infer_lock = threading.Lock()
        parts = FeedParts(self._lanes, self.stats, self._prepare, self.tensors.recycle, self._abort)
        self._sources = SourceSet(model, self.preprocess.hw, parts, self._sources_ended)
        self.postprocess = create_postprocessor(model.postprocess, runner.outputs, self.preprocess.hw)
        self.sink = create_sink(model.sink)
        self._threads: List[threading.Thread] = []
        self.state = "created"
        self.plan_key: Optional[Any] = None  # the plan cache key of the runner, set by the daemon
        self.extra_plan_keys: List[Any] = []  # those of the extra runners
        self.devices: List[str] = []  # the device of each runner, set by the daemon
        self.results_hook: Optional[Callable[[Dict[str, Any]], None]] = None  # e.g. rate-limited MQTT results
        self.error: Optional[str] = None
        # Heartbeats (time.monotonic()) of the infer and output workers, stamped on every batch and
        # idle poll. Sources have none: a camera may rightly be quiet for hours (its state, not a hang).
        self._beats: Dict[str, float] = {}
        self._next: List[Optional[NextBatch]] = [
            NextBatch(self._lanes, model.batch, functools.partial(self._assemble, index, early=True), self._abort)
            if self.tensors.capacity > 1
            else None
            for index in range(len(self.runners))
        ]

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        self._sources.open()
        self.state = "running"
        self._sources.start()
        loops: List[Tuple[str, Callable[[], None], bool]] = []  # name, loop, whether it beats
        for index in range(len(self.runners)):
            suffix = "" if len(self.runners) == 1 else str(index)
            loops.append((f"infer{suffix}", functools.partial(self._infer_loop, index), True))
            ahead = self._next[index]
            if ahead is not None:  # it waits for the infer thread, which beats for both
                loops.append((f"next{suffix}", ahead.run, False))
        loops.append(("output", self._output_loop, True))
        now = time.monotonic()
        for name, target, beats in loops:
            thread = threading.Thread(target=target, name=f"edged-{self.model.name}-{name}", daemon=True)
            if beats:
                self._beats[thread.name] = now
            self._threads.append(thread)
            thread.start()

    def _join_all(self, deadline: Optional[float]) -> None:
        self._sources.join(deadline)
        for thread in self._threads:
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))

    def _anything_alive(self) -> bool:
        return any(t.is_alive() for t in self._threads) or self._sources.alive

    def stop(self, timeout: float = 4.0) -> bool:
        """Stop the sources, drain queued frames, and close. True when drained in time;
        otherwise what was still queued or in flight is counted as dropped ('shutdown')."""
        deadline = time.monotonic() + timeout
        self.stop_source()
        self.state = "draining"
        self._join_all(deadline)
        drained = not self._anything_alive()
        if not drained:
            self._abort.set()
            for thread in self._threads:
                thread.join(0.5)
        self._finish()
        return drained

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Wait for finite sources to be fully processed; True when they were."""
        self._join_all(None if timeout is None else time.monotonic() + timeout)
        return not self._anything_alive()

    def stop_source(self) -> None:
        """Ask every source to stop without waiting: the first step of a drain, so several
        pipelines can drain in parallel before each one's ``stop``."""
        self._sources.stop()

    @property
    def finished(self) -> bool:
        """Every thread of a started pipeline has ended (finite sources fully processed,
        or a stop)."""
        return bool(self._threads) and not self._anything_alive()

    @property
    def last_progress(self) -> float:
        """The oldest heartbeat among the infer and output workers still running: how long
        ago the most stalled worker last showed life (time.monotonic()). A worker stuck in
        an engine call or a sink write stops beating; an idle one keeps beating."""
        alive = [self._beats[t.name] for t in self._threads if t.name in self._beats and t.is_alive()]
        return min(alive) if alive else time.monotonic()

    def abandon(self, reason: str) -> None:
        """Give up on a pipeline whose worker is stuck (see ModelSet.restart): stop its
        sources and threads where they still listen, and count what it held as dropped
        (``reason``). Its engines are not closed: a thread may still be inside one, and
        freeing an engine under a running call crashes native code; the memory is the
        price of keeping the other models serving."""
        self.stop_source()
        self._abort.set()
        self.state = "failed"
        self.error = reason
        # The threads that still listen end within a poll; counting waits for them so that
        # no frame is counted twice. A stuck thread that returns later counts nothing more.
        for thread in self._threads:
            thread.join(_ABANDON_JOIN_S)
        self._abandoned = True
        self.stats.drop_unaccounted("stalled")

    def _beat(self) -> None:
        self._beats[threading.current_thread().name] = time.monotonic()

    @property
    def source_finished(self) -> bool:
        """Every source's reader has ended: its input is exhausted, it failed, or it was
        stopped. A source that is merely quiet (a camera between frames) is not finished."""
        return self._sources.ended

    @property
    def source(self) -> Source:
        """The first source (the only one of a model written with ``source:``)."""
        return self._sources.first

    def source_status(self) -> List[Dict[str, Any]]:
        """Each source in force, in config order (edged.pipeline.source_feed.SourceFeed.status)."""
        return self._sources.status()

    def _sources_ended(self, failure: Optional[str]) -> None:
        if failure is not None and self.state == "running":
            self._fail(failure)

    def _finish(self) -> None:
        self.stats.drop_unaccounted("shutdown")
        try:
            self.sink.close()
        except OSError as exc:
            log.error("model %s: closing sink failed: %s", self.model.name, exc)
        self._sources.close_unstarted()
        self.close_runners()
        if self.state != "failed":
            self.state = "stopped"

    def close_runners(self) -> None:
        for runner in self.runners:
            runner.close()

    def _fail(self, message: str) -> None:
        self.error = message
        self.state = "failed"
        log.error("model %s: %s", self.model.name, message)

    # -- sources changed while running -------------------------------------------------

    @property
    def accepts_source_changes(self) -> bool:
        """Running with at least one source still reading: a push may edit its sources in
        place. (A pipeline whose sources all ended winds down; it is replaced instead.)"""
        return self.state == "running" and not self._sources.ended

    def prepare_sources(
        self, model: ModelConfig, added: Sequence[str], changed: Sequence[str], removed: Sequence[str]
    ) -> SourceEdit:
        """Open the sources ``model`` adds or changes (by id) beside the running ones; raises
        what opening raises (a missing file), leaving nothing open."""
        return self._sources.prepare(model, added, changed, removed)

    def apply_sources(self, edit: SourceEdit) -> None:
        """Put a prepared source edit in force (edged/pipeline/source_set.py); the engine and
        the other sources are untouched."""
        self._sources.apply(edit)
        self.tensors.sources_changed(edit.config)
        self.model = edit.config

    def discard_sources(self, edit: SourceEdit) -> None:
        """Close the sources an edit opened (the push was aborted)."""
        self._sources.discard(edit)

    # -- threads -----------------------------------------------------------------------

    def _prepare(self, frame: Frame) -> None:
        start = time.perf_counter()
        image, preprocess = frame.image, self.preprocess
        frame.tensor = image if preprocess.as_is(image) else preprocess(image, self.tensors.take(), frame.meta)
        frame.preprocess_ms = (time.perf_counter() - start) * 1000.0
        frame.enqueue_ts = time.monotonic()

    def _drop(self, reason: str, frames: List[Frame]) -> None:
        if self._abandoned:  # abandon() counted them as 'stalled' already
            return
        for frame in frames:
            self.stats.count_drop(reason, source=frame.source)

    def _assemble(self, index: int, frames: List[Frame], slot: int, early: bool = False) -> Prepared:
        """``frames`` as one batch in batch tensor ``slot`` of engine ``index``, their waits
        recorded. ``early``: taken during an engine call (edged.pipeline.next_batch) and
        copied, so their sample tensors go back to the pool at once."""
        now = time.monotonic()
        latency = self.stats.latency
        for frame in frames:
            latency["queue_wait"].record((now - frame.enqueue_ts) * 1000.0, now)
            latency["preprocess"].record(frame.preprocess_ms, now)
        batch = self.tensors.batch(frames, index, slot)
        if early:
            self.tensors.recycle(frames)
        return frames, batch

    def _infer_loop(self, index: int = 0) -> None:
        runner, ahead = self.runners[index], self._next[index]
        latency = self.stats.latency
        slot = 0  # the batch tensor this call runs from; the other one is the helper's
        prepared: Optional[Prepared] = None
        runner.attach_thread()
        try:
            while not self._abort.is_set():
                if prepared is None:
                    frames = self._lanes.take(self.model.batch, self.model.max_wait_ms / 1000.0)
                    if not frames:
                        if self._sources.ended and self._lanes.empty():
                            break
                        self._beat()
                        continue
                    prepared = self._assemble(index, frames, slot)
                frames, batch = prepared
                prepared = None
                n = len(frames)
                if ahead is not None:
                    ahead.engine_starting(slot ^ 1)
                call_start = time.monotonic()
                try:
                    outputs = runner.infer({self._input.name: batch})
                except Exception as exc:
                    self._errors.error("inference", exc)
                    self._drop("inference_error", frames)
                    continue
                finally:
                    self.tensors.recycle(frames)
                    if ahead is not None:
                        prepared = ahead.collect()
                        slot ^= 1
                done = time.monotonic()
                timings = runner.last_timings
                latency["inference"].record(
                    timings.compute_ms if timings.compute_ms is not None else (done - call_start) * 1000.0, done
                )
                self.stats.count_batch(n)
                self._beat()
                if prepared is None and self._lanes.empty() and self._out.try_turn():
                    # Nothing waits for the engine: write the result here rather than wake
                    # the output thread for it (edged/pipeline/hand_off.py).
                    try:
                        self._write_batch(frames, outputs)
                    finally:
                        self._out.done()
                else:
                    self._hand_over((frames, outputs, done))
        finally:
            if ahead is not None:
                ahead.stop()
            with self._infer_lock:
                self._infer_running -= 1
                if self._infer_running == 0:
                    self._infer_done.set()

    def _hand_over(self, item: Batch) -> None:
        if not self._out.put(item, self._abort):
            self._drop("shutdown", item[0])

    def _output_loop(self) -> None:
        while not self._abort.is_set():
            batches = self._out.take_all(_POLL_S)
            if not batches:
                if self._infer_done.is_set() and self._out.empty():
                    break
                self._beat()
                self._flush_idle()
                continue
            try:
                for frames, outputs, _ in batches:
                    # After an abort, what is left is counted as dropped ('shutdown') by stop().
                    if self._abort.is_set() or not self._write_batch(frames, outputs):
                        return
                    self._beat()
            finally:
                self._out.done()

    def _flush_idle(self) -> None:
        """A quiet spell (a poll without results) makes the results held by the sink
        durable: a camera gone quiet leaves none of its last results in memory."""
        if not self._out.try_turn():
            return
        try:
            self.sink.flush()
        except OSError as exc:
            self._errors.error("sink write", exc)
        finally:
            self._out.done()

    def _write_batch(self, frames: List[Frame], outputs: Dict[str, np.ndarray]) -> bool:
        """Postprocess and write one batch; False when abandon() came while writing."""
        latency = self.stats.latency
        name = self.model.name
        for index, frame in enumerate(frames):
            start = time.monotonic()
            try:
                result = self.postprocess(outputs, index, frame)
            except Exception as exc:
                self._errors.error("postprocess", exc)
                if not self._abandoned:
                    self.stats.count_drop("postprocess_error", source=frame.source)
                continue
            post_done = time.monotonic()
            record = {
                "model": name,
                "source": frame.source,
                "seq": frame.seq,
                "origin": frame.origin,
                "capture_ts": frame.wall_ts,
                "ts": time.time(),
            }
            record.update(result)
            try:
                self.sink.write(record)
            except ResultsHeld as exc:  # kept, for the next flush: written, as far as counting goes
                self._errors.error("sink write", exc)
            except (OSError, ValueError) as exc:
                self._errors.error("sink write", exc)
                if not self._abandoned:
                    self.stats.count_drop("sink_error", source=frame.source)
                continue
            if self._abandoned:  # a write stuck until after abandon(): already counted
                return False
            if self.results_hook is not None:
                self.results_hook(record)
            end = time.monotonic()
            latency["postprocess"].record((post_done - start) * 1000.0, end)
            latency["e2e"].record((end - frame.capture_ts) * 1000.0, end)
            self.stats.count_out(source=frame.source)
        return True
