"""The control plane: config pushes and commands in, results and retained state out.

Transport-independent: messages arrive through :meth:`ControlPlane.submit` (the MQTT
binding calls it from its network thread) and are processed one at a time on the plane's
own worker thread, so version checks always see the config that the previous push left in
force and the network thread never waits on a plan build. Results go out through the
``publish`` callable given at construction.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

from edged.config.loader import parse_config
from edged.control.canonical import SignatureError, load_public_key, verify_signature
from edged.control.host import ControlHost
from edged.control.payload import DuplicatePush, PushRejected, decode_json, parse_push
from edged.control.settings import control_settings, redact
from edged.control.store import ConfigStore
from edged.errors import ApplyError, ConfigError, EdgedError
from edged.model_changes import Changes

__all__ = ["ControlPlane", "Message", "Publish", "COMMANDS"]

log = logging.getLogger(__name__)

COMMANDS = ("reload", "rebuild-plans", "snapshot")
_QUEUE_SIZE = 64

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

    def submit(self, message: Message) -> None:
        """Queue a message; safe to call from a network callback (never blocks)."""
        try:
            self._queue.put_nowait(message)
        except queue.Full:
            log.error("control: %d messages waiting; dropped one on %s", _QUEUE_SIZE, message.topic)

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
            result = self._push(message)
            default_topic = f"{self.prefix()}/config/result"
        elif topic.startswith(f"{self.prefix()}/cmd/"):
            verb = topic[len(self.prefix()) + len("/cmd/") :]
            result = self._command(verb, message)
            default_topic = f"{self.prefix()}/cmd/{verb}/result"
        else:
            log.warning("control: ignoring message on %s", topic)
            return {}
        result.update(device=self.device_id, elapsed_ms=round((time.monotonic() - start) * 1000.0, 1), ts=time.time())
        self.processed += 1
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

    def _push(self, message: Message) -> Dict[str, Any]:
        config = self.host.config
        settings = control_settings(config)
        if not settings.accept_pushes:
            return {"status": "rejected", "errors": ["control.accept_pushes is false on this device"]}
        targets = [config.device.id, *config.device.groups]
        try:
            push = parse_push(message.payload, config, settings, self._public_keys(), self.host.config_digest, targets)
        except DuplicatePush as dup:
            return {"status": "duplicate", "id": dup.request_id, "version": dup.version, "errors": []}
        except PushRejected as exc:
            log.warning("control: push on %s rejected: %s", message.topic, exc)
            return {"status": "rejected", "id": exc.request_id, "version": exc.version, "errors": exc.problems}
        except SignatureError as exc:
            return {"status": "rejected", "errors": [str(exc)]}
        try:
            new = parse_config(push.document, message.topic)
        except ConfigError as exc:
            return {"status": "rejected", "id": push.request_id, "version": push.version, "errors": exc.problems}
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
        return {"status": "applied", "id": push.request_id, "version": push.version, "changes": changes.as_dict()}

    def _command(self, verb: str, message: Message) -> Dict[str, Any]:
        request: Dict[str, Any] = {}
        try:
            if message.payload.strip():
                doc = decode_json(message.payload, control_settings(self.host.config).max_payload_bytes)
                if not isinstance(doc, dict):
                    raise PushRejected(["payload: expected a JSON object"])
                request = doc
            keys = self._public_keys()
            if keys:
                verify_signature(request, keys)
        except (PushRejected, SignatureError) as exc:
            return {"command": verb, "status": "rejected", "errors": [str(exc)]}
        request_id = request.get("id") if isinstance(request.get("id"), str) else None
        reply: Dict[str, Any] = {"command": verb, "id": request_id}
        try:
            reply.update(self._run_command(verb, request))
        except EdgedError as exc:
            reply.update(status="failed", errors=[str(exc)], version=self.host.config.version)
        return reply

    def _run_command(self, verb: str, request: Dict[str, Any]) -> Dict[str, Any]:
        host = self.host
        if verb == "reload":
            host.reload()
            return {"status": "ok", "errors": [], "version": host.config.version}
        if verb == "rebuild-plans":
            names = request.get("models") or [m.name for m in host.config.models]
            known = {m.name for m in host.config.models}
            unknown = [n for n in names if n not in known] if isinstance(names, list) else [names]
            if unknown:
                raise EdgedError(f"models: unknown model(s) {unknown!r}")
            changes = host.apply_config(host.config, rebuild=names)
            return {"status": "ok", "errors": [], "version": host.config.version, "changes": changes.as_dict()}
        if verb == "snapshot":
            return dict(self.state(), status="ok", errors=[])
        raise EdgedError(f"cmd/{verb}: unknown command (known: {', '.join(COMMANDS)})")

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
            models[name] = entry
        return {
            "version": running.version,
            "source": running.source,
            "config": redact(json.loads(json.dumps(dict(running.config.document), default=str))),
            "models": models,
        }

    def publish_state(self) -> None:
        body = dict(self.state(), ts=time.time())
        self.publish(f"{self.prefix()}/config/state", json.dumps(body, sort_keys=True).encode(), True, None)

    def _on_config_applied(self, config: Any) -> None:
        self.publish_state()
