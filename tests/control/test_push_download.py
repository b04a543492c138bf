"""Pushes that bring the model file by URL, against a real HTTPS server on 127.0.0.1 and
a daemon serving real ONNX Runtime pipelines: downloaded, verified, built and serving; or
a clear refusal naming the cause while the models in force keep serving."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Tuple

import pytest

from edged.config.sources import ARCHIVE_SUFFIX
from edged.control.plane import Message
from edged.fetch.fetcher import PARTIAL_DIR
from tests.control.conftest import Harness, serving_model
from tests.fetch.conftest import sha256
from tests.fetch.server import FileServer
from tests.mqtt.broker import make_ca

TOPIC = "edged/node-1/config/set"


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Path]:
    return make_ca(tmp_path_factory.mktemp("ca"))


@pytest.fixture()
def www(demo_assets: Path, tmp_path: Path) -> Path:
    root = tmp_path / "www"
    root.mkdir()
    shutil.copy(demo_assets / "demo-cnn.onnx", root / "model.onnx")
    shutil.copy(demo_assets / "labels.txt", root / "labels.txt")
    return root


@pytest.fixture()
def server(www: Path, ca: Dict[str, Path]) -> Iterator[FileServer]:
    with FileServer(www, tls=ca) as srv:
        yield srv


def downloads(ca: Dict[str, Path], **overrides: Any) -> Dict[str, Any]:
    section: Dict[str, Any] = {"ca_file": str(ca["ca"]), "timeout_s": 2, "retries": 2, "backoff_s": 0.05}
    section.update(reserve_mb=0, **overrides)
    return section


@pytest.fixture()
def harness(base_doc: Dict[str, Any], ca: Dict[str, Path]) -> Iterator[Harness]:
    base_doc["control"]["downloads"] = downloads(ca)
    h = Harness(base_doc)
    yield h
    h.close()


def url_model(server: FileServer, www: Path, name: str = "remote", **source: Any) -> Dict[str, Any]:
    """A serving model whose file comes from ``server``; a ``source`` value None leaves the key out."""
    entry = serving_model(name, "")
    path = dict(
        url=server.url("model.onnx"), sha256=sha256(www / "model.onnx"), size=(www / "model.onnx").stat().st_size
    )
    path.update(source)
    entry["path"] = {k: v for k, v in path.items() if v is not None}
    return entry


def push(h: Harness, models: List[Dict[str, Any]], version: int = 2) -> Dict[str, Any]:
    body = json.dumps({"version": version, "id": f"push-{version}", "patch": {"models": models}}).encode()
    return h.plane.process(Message(TOPIC, body))


def store_of(h: Harness) -> Path:
    return Path(h.daemon.config.document["control"]["model_dirs"][0]) / "store"


def stored(h: Harness) -> List[str]:
    store = store_of(h)
    return sorted(str(p.relative_to(store)) for p in store.rglob("*") if p.is_file()) if store.exists() else []


def base_entry(h: Harness) -> Dict[str, Any]:
    return dict(h.daemon.config.document["models"][0])


def test_a_url_model_is_downloaded_verified_built_and_serving(harness: Harness, server: FileServer, www: Path) -> None:
    h = harness
    entry = url_model(server, www)
    entry["postprocess"] = {
        "type": "classify",
        "labels": {"url": server.url("labels.txt"), "sha256": sha256(www / "labels.txt")},
    }
    result = push(h, [base_entry(h), entry])
    assert result["status"] == "applied", result
    assert result["changes"]["added"] == ["remote"]
    model = h.daemon.config.model("remote")
    digest = entry["path"]["sha256"]
    assert model.path == str(store_of(h) / digest)
    assert model.postprocess.get("labels") == str(store_of(h) / sha256(www / "labels.txt"))
    assert stored(h) == sorted([digest, sha256(www / "labels.txt")])
    # Serving from the stored file.
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        state = h.daemon.snapshot(latency=False).models["remote"]
        if state.counters and state.counters.frames_out > 0:
            break
        time.sleep(0.1)
    assert state.serving and state.counters is not None and state.counters.frames_out > 0
    # The push's progress went out as interim results on config/result, then the result.
    bodies = [json.loads(p) for t, p, _, _ in h.published if t == "edged/node-1/config/result"]
    interim = [b for b in bodies if b["status"] == "downloading"]
    assert interim and all(b["id"] == "push-2" and b["version"] == 2 for b in interim)
    assert {b["download"]["field"] for b in interim} == {"path", "postprocess.labels"}
    last = [b["download"] for b in interim if b["download"]["field"] == "path"][-1]
    assert last["bytes"] == last["total_bytes"] == entry["path"]["size"]
    assert bodies[-1]["status"] == "applied"
    # config/state shows the URL as pushed, not the store path.
    state_doc = json.loads([p for t, p, _, _ in h.published if t.endswith("config/state")][-1])
    assert state_doc["config"]["models"][1]["path"]["url"] == server.url("model.onnx")


def test_a_connection_cut_mid_file_resumes_and_the_push_applies(
    harness: Harness, server: FileServer, www: Path
) -> None:
    server.cut_after, server.cuts = 2500, 1
    result = push(harness, [base_entry(harness), url_model(server, www)])
    assert result["status"] == "applied", result
    assert [r for _, r in server.requests] == [None, "bytes=2500-"]


def _wrong_hash(server: FileServer, www: Path, root: Path) -> Dict[str, Any]:
    return url_model(server, www, sha256="f" * 64)


def _missing(server: FileServer, www: Path, root: Path) -> Dict[str, Any]:
    return url_model(server, www, url=server.url("nothing-here.onnx"))


def _larger(server: FileServer, www: Path, root: Path) -> Dict[str, Any]:
    return url_model(server, www, size=1000)


def _slow(server: FileServer, www: Path, root: Path) -> Dict[str, Any]:
    server.delay_s = 10 * 0.3
    return url_model(server, www)


def _other_ca(server: FileServer, www: Path, root: Path) -> Dict[str, Any]:
    impostor = FileServer(www, tls=make_ca(root / "other", name="other"))
    server.others.append(impostor.__enter__())
    return url_model(impostor, www)


FAILURES: Dict[str, Tuple[Callable[[FileServer, Path, Path], Dict[str, Any]], str]] = {
    "wrong hash": (_wrong_hash, r"sha256 mismatch: the file hashes to [0-9a-f]{64}, expected f{64}"),
    "404": (_missing, r"HTTP 404 Not Found"),
    "larger than declared": (_larger, r"the server announces 6918 bytes; the config declares size 1000"),
    "10x slower than the timeout": (_slow, r"timed out: no answer within 0.3 s \(after 2 attempts\)"),
    "another CA": (_other_ca, r"TLS: the server's certificate is not trusted: .*certificate"),
}


@pytest.mark.parametrize("case", list(FAILURES))
def test_a_bad_download_is_rejected_by_name_and_the_models_in_force_keep_serving(
    case: str, base_doc: Dict[str, Any], ca: Dict[str, Path], server: FileServer, www: Path, tmp_path: Path
) -> None:
    make, cause = FAILURES[case]
    base_doc["control"]["downloads"] = downloads(ca, timeout_s=0.3, retries=1)
    h = Harness(base_doc)
    server.others = []  # type: ignore[attr-defined]
    try:
        before = h.daemon.snapshot(latency=False).models["base"].counters
        pipeline = h.daemon.models.slots["base"].pipeline
        result = push(h, [base_entry(h), make(server, www, tmp_path)])
        assert result["status"] == "rejected", result
        assert len(result["errors"]) == 1
        assert result["errors"][0].startswith("model 'remote' path: https://127.0.0.1:")
        assert re.search(cause, result["errors"][0]), result["errors"][0]
        assert h.daemon.config.version == 1 and [m.name for m in h.daemon.config.models] == ["base"]
        assert h.daemon.models.slots["base"].pipeline is pipeline  # never stopped
        time.sleep(0.3)
        after = h.daemon.snapshot(latency=False).models["base"].counters
        assert before is not None and after is not None and after.frames_out > before.frames_out
        assert [n for n in stored(h) if not n.startswith(PARTIAL_DIR)] == []  # nothing under a store name
    finally:
        for other in server.others:  # type: ignore[attr-defined]
            other.__exit__()
        h.close()


def test_a_full_disk_is_rejected_and_nothing_partial_is_left(
    base_doc: Dict[str, Any], ca: Dict[str, Path], server: FileServer, www: Path, tmp_path: Path
) -> None:
    mount = Path(base_doc["control"]["model_dirs"][0]) / "tiny"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4k", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.decode().strip()}")
    base_doc["control"]["downloads"] = downloads(ca, store_dir=str(mount / "store"))
    h = Harness(base_doc)
    try:
        server.content_length = False  # the size shows only while writing
        result = push(h, [base_entry(h), url_model(server, www, size=None)])
        assert result["status"] == "rejected", result
        assert "disk full after" in result["errors"][0]
        assert [p for p in (mount / "store").rglob("*") if p.is_file()] == []
        assert h.daemon.snapshot(latency=False).models["base"].serving
    finally:
        h.close()
        subprocess.run(["umount", str(mount)], check=True)


def test_the_store_keeps_what_configs_use_and_collects_the_rest(
    harness: Harness, server: FileServer, www: Path
) -> None:
    h = harness
    first = sha256(www / "model.onnx")
    assert push(h, [base_entry(h), url_model(server, www)])["status"] == "applied"
    import onnx
    from make_demo_model import build_model

    onnx.save(build_model(seed=8), str(www / "model2.onnx"))  # another model, another hash
    second = url_model(server, www, url=server.url("model2.onnx"), sha256=sha256(www / "model2.onnx"))
    second["path"]["size"] = (www / "model2.onnx").stat().st_size
    result = push(h, [base_entry(h), second], version=3)
    assert result["status"] == "applied" and result["changes"]["changed"] == ["remote"], result
    assert first in stored(h)  # within the grace period (a day by default)
    assert h.daemon.collect_store(grace_s=0) == [str(store_of(h) / first)]
    assert stored(h) == [sha256(www / "model2.onnx")]  # the persisted push and the config in force use it


def test_an_images_archive_feeds_calibration(
    harness: Harness, server: FileServer, www: Path, demo_assets: Path
) -> None:
    import tarfile

    with tarfile.open(www / "calib.tar", "w") as tar:
        for image in sorted((demo_assets / "images").iterdir()):
            tar.add(str(image), arcname=image.name)
    entry = url_model(server, www)
    entry["precision"] = "int8"
    entry["calibration"] = {"images": {"url": server.url("calib.tar"), "sha256": sha256(www / "calib.tar")}}
    result = push(harness, [base_entry(harness), entry])
    assert result["status"] == "applied", result
    folder = Path(harness.daemon.config.model("remote").calibration["images"])  # type: ignore[index]
    assert folder.name == sha256(www / "calib.tar") + ARCHIVE_SUFFIX
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in (demo_assets / "images").iterdir())


def test_a_signed_push_covers_the_url_and_the_hash(
    base_doc: Dict[str, Any], ca: Dict[str, Path], server: FileServer, www: Path
) -> None:
    """Whoever controls the web server (or the broker) cannot swap the model: changing the
    URL or hash of a signed push breaks its signature, and changing the served file breaks
    the hash."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from edged.control.canonical import public_key_text, sign_payload

    key = Ed25519PrivateKey.generate()
    base_doc["control"]["public_keys"] = [public_key_text(key)]
    base_doc["control"]["downloads"] = downloads(ca)
    h = Harness(base_doc)
    try:
        entry = url_model(server, www)
        payload: Dict[str, Any] = {"version": 2, "patch": {"models": [base_entry(h), entry]}}
        payload["signature"] = sign_payload(payload, key)
        for field, value in (("url", server.url("evil.onnx")), ("sha256", "e" * 64)):
            tampered = json.loads(json.dumps(payload))
            tampered["patch"]["models"][1]["path"][field] = value
            result = h.plane.process(Message(TOPIC, json.dumps(tampered).encode()))
            assert result["status"] == "rejected" and "signature" in result["errors"][0], result
        assert server.requests == []  # refused before any download
        (www / "model.onnx").write_bytes((www / "model.onnx").read_bytes()[::-1])  # the server swaps the file
        result = h.plane.process(Message(TOPIC, json.dumps(payload).encode()))
        assert result["status"] == "rejected" and "sha256 mismatch" in result["errors"][0], result
    finally:
        h.close()
