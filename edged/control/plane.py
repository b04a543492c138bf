"""The control plane: config pushes and commands in, results and retained state out.

Transport-independent: messages arrive through :meth:`ControlPlane.submit` (the MQTT
binding calls it from its network thread) and are processed one at a time on the plane's
own worker thread, so version checks always see the config that the previous push left in
force and the network thread never waits on a plan build. Results go out through the
``publish`` callable given at construction.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

from edged.control.admission import Admission, Context
from edged.control.canonical import SignatureError, load_public_key
from edged.control.commands import CommandClock, CommandRejected, parse_command
from edged.control.host import ControlHost
from edged.control.payload import DuplicatePush, PushRejected, parse_push
from edged.control.settings import control_settings, redact
from edged.control.store import ConfigStore
from edged.errors import ApplyError, EdgedError
from edged.fetch.progress import DownloadProgress
from edged.model_changes import Changes
from edged.model_state import SourceState

__all__ = ["ControlPlane", "Message", "Publish"]

log = logging.getLogger(__name__)

_QUEUE_SIZE = 64
# Interim `downloading` results go out at most this often per push.
_PROGRESS_PERIOD_S = 1.0

# publish(topic, payload, retain, correlation_data)
Publish = Callable[[str, bytes, bool, Optional[bytes]], None]


@dataclass(frozen=True)
class Message:
    topic: str
    payload: bytes
    response_topic: Optional[str] = None
    correlation_data: Optional[bytes] = None


class ControlPlane:
    def __init__(self, host: ControlHost, publish: Publish) -> None:
        self.host = host
        self.publish = publish
        self._keys_for: Tuple[Tuple[str, ...], List[Any]] = ((), [])
        self._public_keys()  # a malformed key in the local file fails start-up, naming it
        self._queue: queue.Queue[Optional[Message]] = queue.Queue(_QUEUE_SIZE)
        self._thread: Optional[threading.Thread] = None
        self.processed = 0
        self.admission = Admission()
        self._clock = CommandClock(control_settings(host.config).state_dir)

    # -- topics ------------------------------------------------------------------------

    @property
    def device_id(self) -> str:
        return self.host.config.device.id

    def prefix(self) -> str:
        return f"edged/{self.device_id}"

    def subscriptions(self) -> List[str]:
        config = self.host.config
        topics = [f"{self.prefix()}/config/set", f"{self.prefix()}/cmd/+"]
        topics += [f"edged/group/{group}/config/set" for group in config.device.groups]
        return topics

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        self.host.config_listeners.append(self._on_config_applied)
        self._thread = threading.Thread(target=self._worker, name="edged-control", daemon=True)
        self._thread.start()
        self.publish_state()

    def stop(self, timeout: float = 10.0) -> None:
        if self._on_config_applied in self.host.config_listeners:
            self.host.config_listeners.remove(self._on_config_applied)
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout)
            self._thread = None

    def _context(self) -> Context:
        config = self.host.config
        return Context(
            prefix=self.prefix(),
            version=config.version,
            applied_digest=self.host.config_digest,
            settings=control_settings(config),
            public_keys=self._public_keys(),
            targets=[config.device.id, *config.device.groups],
            command_last_ts=self._clock.last(),
            now=time.time(),
        )

    def submit(self, message: Message) -> None:
        """Screen a message (admission.py) and queue it, or answer why not; safe to call
        from a network callback (never blocks on the worker)."""
        start = time.monotonic()
        refusal = self.admission.screen(message.topic, message.payload, self._context())
        if refusal is not None:
            self._reply(message, refusal.reply, refusal.default_topic, start)
            return
        try:
            self._queue.put_nowait(message)
        except queue.Full:
            self.admission.count("queue_full")
            log.error("control: %d messages waiting; dropped one on %s", _QUEUE_SIZE, message.topic)
            reply: Dict[str, Any] = {"status": "dropped", "reason": "queue_full"}
            reply["errors"] = [f"control: {_QUEUE_SIZE} messages already waiting; send it again later"]
            if "/cmd/" in message.topic:
                verb = message.topic.rsplit("/", 1)[-1]
                self._reply(message, dict(reply, command=verb), f"{self.prefix()}/cmd/{verb}/result", start)
            else:
                self._reply(message, reply, f"{self.prefix()}/config/result", start)

    def _worker(self) -> None:
        while True:
            message = self._queue.get()
            if message is None:
                return
            try:
                self.process(message)
            except Exception:  # the plane must outlive any one message
                log.exception("control: handling %s failed", message.topic)

    # -- processing --------------------------------------------------------------------

    def process(self, message: Message) -> Dict[str, Any]:
        """Handle one message synchronously, publish and return its result."""
        start = time.monotonic()
        topic = message.topic
        if topic.endswith("/config/set"):
            handler: Callable[[], Dict[str, Any]] = functools.partial(self._push, message)
            default_topic = f"{self.prefix()}/config/result"
            failed: Dict[str, Any] = {}
        elif topic.startswith(f"{self.prefix()}/cmd/"):
            verb = topic[len(self.prefix()) + len("/cmd/") :]
            handler = functools.partial(self._command, verb, message)
            default_topic = f"{self.prefix()}/cmd/{verb}/result"
            failed = {"command": verb}
        else:
            log.warning("control: ignoring message on %s", topic)
            return {}
        try:
            result = handler()
        except Exception as exc:  # every message gets an answer, a bug's included
            log.exception("control: handling %s failed", topic)
            result = dict(failed, status="failed", errors=[f"internal error: {type(exc).__name__}: {exc}"])
        self.processed += 1
        return self._reply(message, result, default_topic, start)

    def _reply(self, message: Message, result: Dict[str, Any], default_topic: str, start: float) -> Dict[str, Any]:
        result.update(device=self.device_id, elapsed_ms=round((time.monotonic() - start) * 1000.0, 1), ts=time.time())
        body = json.dumps(result, sort_keys=True).encode()
        self.publish(default_topic, body, False, message.correlation_data)
        if message.response_topic and message.response_topic != default_topic:
            self.publish(message.response_topic, body, False, message.correlation_data)
        return result

    def _public_keys(self) -> List[Any]:
        texts = control_settings(self.host.config).public_keys
        if texts != self._keys_for[0]:
            self._keys_for = (texts, [load_public_key(text) for text in texts])
        return self._keys_for[1]

    def _local_dir(self) -> Optional[str]:
        path = self.host.config_path
        return os.path.dirname(os.path.abspath(path)) if path else None

    def _push(self, message: Message) -> Dict[str, Any]:
        config = self.host.config
        settings = control_settings(config)
        if not settings.accept_pushes:
            return {"status": "rejected", "errors": ["control.accept_pushes is false on this device"]}
        targets = [config.device.id, *config.device.groups]
        try:
            push = parse_push(
                message.payload,
                config,
                settings,
                self._public_keys(),
                self.host.config_digest,
                targets,
                local_dir=self._local_dir(),
            )
        except DuplicatePush as dup:
            return {"status": "duplicate", "id": dup.request_id, "version": dup.version, "errors": []}
        except PushRejected as exc:
            log.warning("control: push on %s rejected: %s", message.topic, exc)
            return {"status": "rejected", "id": exc.request_id, "version": exc.version, "errors": exc.problems}
        except SignatureError as exc:
            return {"status": "rejected", "errors": [str(exc)]}
        new = push.config
        try:
            # Before the push's turn on the change queue (docs/downloads.md): the queue and
            # the models in force never wait on a server; this worker waits at most
            # control.downloads.deadline_s.
            self.host.fetch(new, self._progress_reporter(message, push.request_id, push.version))
        except EdgedError as exc:
            log.error("control: push version %d rejected: %s", push.version, exc)
            return {"status": "rejected", "id": push.request_id, "version": push.version, "errors": [str(exc)]}
        store = ConfigStore(settings.state_dir)

        def persist(changes: Changes) -> None:
            try:
                store.save(push.document, push.version, push.digest)
            except OSError as exc:
                raise ApplyError(f"control.state_dir: cannot persist the config to {store.path}: {exc}") from exc

        try:
            changes = self.host.apply_config(new, before_switch=persist, source="pushed", digest=push.digest)
        except ApplyError as exc:
            log.error("control: push version %d rolled back: %s", push.version, exc)
            return {"status": "rolled_back", "id": push.request_id, "version": push.version, "errors": [str(exc)]}
        result: Dict[str, Any] = {
            "status": "applied",
            "id": push.request_id,
            "version": push.version,
            "changes": changes.as_dict(),
        }
        if changes.restart_required:
            result["restart_required"] = changes.restart_required
        return result

    def _progress_reporter(
        self, message: Message, request_id: Optional[str], version: int
    ) -> Callable[[DownloadProgress], None]:
        """Publishes interim ``downloading`` results for a push, at most once a period per
        file and whenever a file changes state (downloading, retrying, verifying)."""
        last: Dict[str, Tuple[float, str]] = {}
        start = time.monotonic()

        def report(progress: DownloadProgress) -> None:
            now = time.monotonic()
            key = f"{progress.model}/{progress.field}"
            when, state = last.get(key, (-_PROGRESS_PERIOD_S, ""))
            if now - when < _PROGRESS_PERIOD_S and state == progress.state:
                return
            last[key] = (now, progress.state)
            interim: Dict[str, Any] = {"status": "downloading", "id": request_id, "version": version}
            interim.update(errors=[], download=progress.as_dict())
            self._reply(message, interim, f"{self.prefix()}/config/result", start)

        return report

    def _command(self, verb: str, message: Message) -> Dict[str, Any]:
        config = self.host.config
        try:
            command = parse_command(
                verb,
                message.payload,
                control_settings(config),
                self._public_keys(),
                [config.device.id, *config.device.groups],
                time.time(),
                self._clock.last(),
            )
        except CommandRejected as exc:
            return {"command": verb, "status": "rejected", "id": exc.request_id, "errors": exc.problems}
        except SignatureError as exc:  # the cryptography library went missing
            return {"command": verb, "status": "rejected", "errors": [str(exc)]}
        reply: Dict[str, Any] = {"command": verb, "id": command.request_id}
        if command.ts is not None:
            try:
                self._clock.accept(command.ts)
            except OSError as exc:
                reply.update(status="failed", errors=[f"control.state_dir: cannot record the command: {exc}"])
                return reply
        try:
            reply.update(self._run_command(verb, command.models))
        except EdgedError as exc:
            reply.update(status="failed", errors=[str(exc)], version=self.host.config.version)
        return reply

    def _run_command(self, verb: str, models: Optional[Tuple[str, ...]]) -> Dict[str, Any]:
        host = self.host
        if verb == "reload":
            changes = host.reload()
            reply: Dict[str, Any] = {"status": "ok", "errors": [], "version": host.config.version}
            if changes.restart_required:
                reply["restart_required"] = changes.restart_required
            return reply
        if verb == "rebuild-plans":
            names = list(models) if models else [m.name for m in host.config.models]
            known = {m.name for m in host.config.models}
            unknown = [n for n in names if n not in known]
            if unknown:
                raise EdgedError(f"models: unknown model(s) {unknown!r}")
            changes = host.apply_config(host.config, rebuild=names)
            return {"status": "ok", "errors": [], "version": host.config.version, "changes": changes.as_dict()}
        return dict(self.state(), status="ok", errors=[])  # snapshot: parse_command knows no other verb

    # -- state -------------------------------------------------------------------------

    def state(self) -> Dict[str, Any]:
        running = self.host.snapshot(latency=False)
        models = {}
        for name, model in running.models.items():
            entry: Dict[str, Any] = {"state": model.state}
            if model.error:
                entry["error"] = model.error
            if model.counters is not None:
                entry.update(frames_in=model.counters.frames_in, frames_out=model.counters.frames_out)
            if model.sources:
                entry["sources"] = {source.id: _source_entry(source) for source in model.sources}
            models[name] = entry
        return {
            "version": running.version,
            "source": running.source,
            "config": redact(json.loads(json.dumps(dict(running.config.document), default=str))),
            "models": models,
            "control": {"refused": self.admission.counts()},
        }

    def publish_state(self) -> None:
        body = dict(self.state(), ts=time.time())
        self.publish(f"{self.prefix()}/config/state", json.dumps(body, sort_keys=True).encode(), True, None)

    def _on_config_applied(self, config: Any) -> None:
        self.publish_state()


def _source_entry(source: SourceState) -> Dict[str, Any]:
    entry: Dict[str, Any] = {"type": source.type, "state": source.state}
    if source.error:
        entry["error"] = source.error
    if source.retry_in_s is not None:
        entry["retry_in_s"] = source.retry_in_s
    entry.update(frames_in=source.frames_in, frames_out=source.frames_out, dropped=dict(source.dropped))
    return entry
