"""Fetching one model file against a real HTTPS server on 127.0.0.1: verified, resumable,
bounded, and never a partial or wrong file under a store name."""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest

from edged.fetch import DownloadProgress, DownloadSettings, Fetcher, FetchError, collect
from edged.fetch.fetcher import PARTIAL_DIR
from tests.fetch.conftest import remote, sha256
from tests.fetch.server import FileServer, make_client_cert


def settings(store: Path, ca: Dict[str, Path], **overrides: Any) -> DownloadSettings:
    values: Dict[str, Any] = dict(
        store_dir=str(store), ca_file=str(ca["ca"]), timeout_s=2.0, retries=2, backoff_s=0.05, reserve_bytes=0
    )
    values.update(overrides)
    return DownloadSettings(**values)


def names(store: Path) -> List[str]:
    """Every file under the store, partial files included."""
    return sorted(str(p.relative_to(store)) for p in store.rglob("*") if p.is_file())


def test_a_file_is_downloaded_verified_and_stored_under_its_hash(
    server: FileServer, served: Path, ca: Dict[str, Path], tmp_path: Path
) -> None:
    store = tmp_path / "store"
    source = remote(server, served, "demo-cnn.onnx", store)
    seen: List[DownloadProgress] = []
    fetcher = Fetcher()
    fetcher.ensure("m", [source], settings(store, ca), on_progress=seen.append)
    assert Path(source.file).read_bytes() == (served / "demo-cnn.onnx").read_bytes()
    assert names(store) == [source.sha256]
    assert seen[-1].state == "verifying" and seen[-1].bytes_done == source.size == seen[-1].total_bytes
    assert fetcher.board.snapshot() == ()  # nothing under way once done
    # A second ensure finds it: no request.
    fetcher.ensure("m", [source], settings(store, ca))
    assert len(server.requests) == 1


def test_wrong_hash_is_refused_and_nothing_is_left(
    server: FileServer, served: Path, ca: Dict[str, Path], tmp_path: Path
) -> None:
    store = tmp_path / "store"
    source = remote(server, served, "demo-cnn.onnx", store, sha256="0" * 64)
    with pytest.raises(FetchError, match=r"model 'm' path: https://127.0.0.1:\d+/demo-cnn.onnx: sha256 mismatch"):
        Fetcher().ensure("m", [source], settings(store, ca))
    assert names(store) == []


def test_404_is_refused_at_once(server: FileServer, served: Path, ca: Dict[str, Path], tmp_path: Path) -> None:
    store = tmp_path / "store"
    source = remote(server, served, "demo-cnn.onnx", store, url=server.url("missing.onnx"))
    with pytest.raises(FetchError, match="HTTP 404 Not Found"):
        Fetcher().ensure("m", [source], settings(store, ca))
    assert len(server.requests) == 1  # not worth a retry
    assert names(store) == []


def test_a_connection_cut_mid_file_is_resumed_with_range(
    server: FileServer, served: Path, ca: Dict[str, Path], tmp_path: Path
) -> None:
    store = tmp_path / "store"
    source = remote(server, served, "demo-cnn.onnx", store)
    server.cut_after, server.cuts = 3000, 1
    Fetcher().ensure("m", [source], settings(store, ca))
    assert server.requests == [("/demo-cnn.onnx", None), ("/demo-cnn.onnx", "bytes=3000-")]
    assert sha256(Path(source.file)) == source.sha256


def test_cuts_beyond_the_retries_fail_and_keep_the_partial_for_the_next_push(
    server: FileServer, served: Path, ca: Dict[str, Path], tmp_path: Path
) -> None:
    store = tmp_path / "store"
    source = remote(server, served, "demo-cnn.onnx", store)
    server.cut_after, server.cuts = 1000, 10
    with pytest.raises(FetchError, match=r"closed after 3000 bytes of 6918 bytes \(after 3 attempts\)"):
        Fetcher().ensure("m", [source], settings(store, ca))
    assert names(store) == [f"{PARTIAL_DIR}/{source.sha256}"]  # never under the store name
    server.cuts = 0
    Fetcher().ensure("m", [source], settings(store, ca))
    assert [r for _, r in server.requests] == [None, "bytes=1000-", "bytes=2000-", "bytes=3000-"]
    assert names(store) == [source.sha256]


def test_a_server_ignoring_range_starts_the_file_again(
    server: FileServer, served: Path, ca: Dict[str, Path], tmp_path: Path
) -> None:
    store = tmp_path / "store"
    source = remote(server, served, "demo-cnn.onnx", store)
    server.cut_after, server.cuts, server.ranges = 2000, 1, False
    Fetcher().ensure("m", [source], settings(store, ca))
    assert sha256(Path(source.file)) == source.sha256


def test_a_resume_onto_a_changed_file_restarts_whole_once(
    server: FileServer, served: Path, ca: Dict[str, Path], tmp_path: Path
) -> None:
    """A partial left from another version of the file (same hash name is what the config
    expects): the spliced file fails the hash, one whole download fixes it."""
    store = tmp_path / "store"
    source = remote(server, served, "demo-cnn.onnx", store)
    (store / PARTIAL_DIR).mkdir(parents=True)
    (store / PARTIAL_DIR / source.sha256).write_bytes(b"x" * 3000)
    Fetcher().ensure("m", [source], settings(store, ca))
    assert [r for _, r in server.requests] == ["bytes=3000-", None]
    assert sha256(Path(source.file)) == source.sha256


def test_a_file_larger_than_declared_is_refused(
    server: FileServer, served: Path, ca: Dict[str, Path], tmp_path: Path
) -> None:
    store = tmp_path / "store"
    source = remote(server, served, "demo-cnn.onnx", store, size=4000)
    with pytest.raises(FetchError, match="the server announces 6918 bytes; the config declares size 4000"):
        Fetcher().ensure("m", [source], settings(store, ca))
    server.content_length = False  # only the bytes tell
    with pytest.raises(FetchError, match=r"larger than its declared size \(4000 bytes\)"):
        Fetcher().ensure("m", [source], settings(store, ca))
    assert names(store) == []


def test_max_bytes_bounds_a_file_without_a_declared_size(
    server: FileServer, served: Path, ca: Dict[str, Path], tmp_path: Path
) -> None:
    store = tmp_path / "store"
    source = remote(server, served, "demo-cnn.onnx", store, size=None)
    with pytest.raises(FetchError, match=r"over control\.downloads\.max_bytes"):
        Fetcher().ensure("m", [source], settings(store, ca, max_bytes=5000))
    server.content_length = False
    with pytest.raises(FetchError, match=r"larger than its control.downloads.max_bytes"):
        Fetcher().ensure("m", [source], settings(store, ca, max_bytes=5000))
    assert names(store) == []


def test_a_server_ten_times_slower_than_the_timeout_fails_within_the_retries(
    server: FileServer, served: Path, ca: Dict[str, Path], tmp_path: Path
) -> None:
    store = tmp_path / "store"
    source = remote(server, served, "demo-cnn.onnx", store)
    server.delay_s = 3.0
    started = time.monotonic()
    with pytest.raises(FetchError, match=r"timed out: no answer within 0.3 s \(after 2 attempts\)"):
        Fetcher().ensure("m", [source], settings(store, ca, timeout_s=0.3, retries=1))
    assert time.monotonic() - started < 2.0
    assert names(store) == []


def test_the_deadline_bounds_a_trickling_server(
    server: FileServer, served: Path, ca: Dict[str, Path], tmp_path: Path
) -> None:
    store = tmp_path / "store"
    source = remote(server, served, "demo-cnn.onnx", store)
    server.chunk, server.chunk_delay_s = 500, 0.2  # never silent for a whole timeout
    with pytest.raises(FetchError, match=r"deadline_s \(1 s\) passed after"):
        Fetcher().ensure("m", [source], settings(store, ca, deadline_s=1.0))
    assert source.sha256 not in names(store)


def test_a_certificate_from_another_ca_is_refused(
    served: Path, ca: Dict[str, Path], other_ca: Dict[str, Path], tmp_path: Path
) -> None:
    store = tmp_path / "store"
    with FileServer(served, tls=other_ca) as impostor:
        source = remote(impostor, served, "demo-cnn.onnx", store)
        with pytest.raises(FetchError, match=r"TLS: the server's certificate is not trusted: .*certificate"):
            Fetcher().ensure("m", [source], settings(store, ca))
        assert len(impostor.requests) == 0
    assert names(store) == []


def test_the_system_ca_store_is_the_default(
    server: FileServer, served: Path, ca: Dict[str, Path], tmp_path: Path
) -> None:
    store = tmp_path / "store"
    source = remote(server, served, "demo-cnn.onnx", store)
    with pytest.raises(FetchError, match="not trusted"):  # a throw-away CA is in no system store
        Fetcher().ensure("m", [source], settings(store, ca, ca_file=None))


def test_a_client_certificate_is_presented_when_configured(served: Path, ca: Dict[str, Path], tmp_path: Path) -> None:
    store = tmp_path / "store"
    client = make_client_cert(ca, tmp_path)
    with FileServer(served, tls=ca, client_ca=ca["ca"]) as strict:
        source = remote(strict, served, "demo-cnn.onnx", store)
        with pytest.raises(FetchError, match=r"TLS|connection"):
            Fetcher().ensure("m", [source], settings(store, ca, retries=0))
        with_cert = settings(store, ca, cert_file=str(client["cert"]), key_file=str(client["key"]))
        Fetcher().ensure("m", [source], with_cert)
    assert names(store) == [source.sha256]


def test_http_only_when_allowed(served: Path, ca: Dict[str, Path], tmp_path: Path) -> None:
    store = tmp_path / "store"
    with FileServer(served) as plain:
        source = remote(plain, served, "demo-cnn.onnx", store)
        with pytest.raises(FetchError, match=r"http:// is refused \(control.downloads.allow_http is false\)"):
            Fetcher().ensure("m", [source], settings(store, ca))
        assert plain.requests == []
        Fetcher().ensure("m", [source], settings(store, ca, allow_http=True))
    assert names(store) == [source.sha256]


def test_a_corrupted_store_file_is_fetched_again(
    server: FileServer, served: Path, ca: Dict[str, Path], tmp_path: Path
) -> None:
    store = tmp_path / "store"
    source = remote(server, served, "demo-cnn.onnx", store)
    store.mkdir()
    Path(source.file).write_bytes(b"bit rot")
    Fetcher().ensure("m", [source], settings(store, ca))
    assert sha256(Path(source.file)) == source.sha256 and len(server.requests) == 1


def _tar(members: Dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def test_an_images_archive_is_unpacked_into_its_folder(
    server: FileServer, served: Path, ca: Dict[str, Path], tmp_path: Path
) -> None:
    store = tmp_path / "store"
    (served / "calib.tar.gz").write_bytes(_tar({"a/1.png": b"one", "2.png": b"two"}))
    source = remote(server, served, "calib.tar.gz", store, field="calibration.images", archive=True)
    Fetcher().ensure("m", [source], settings(store, ca))
    assert source.path == source.file + ".d"
    assert (Path(source.path) / "a" / "1.png").read_bytes() == b"one"
    (served / "evil.tar.gz").write_bytes(_tar({"../escape.png": b"x"}))
    evil = remote(server, served, "evil.tar.gz", store, field="accuracy.images", archive=True)
    with pytest.raises(FetchError, match=r"member '../escape.png' would land outside its folder"):
        Fetcher().ensure("m", [evil], settings(store, ca))
    assert not (store / "escape.png").exists() and not os.path.exists(evil.path)


def test_garbage_collection_keeps_what_is_referenced_or_recent(tmp_path: Path) -> None:
    store = tmp_path / "store"
    (store / PARTIAL_DIR).mkdir(parents=True)
    kept, old, young = "a" * 64, "b" * 64, "c" * 64
    for name in (kept, old, young):
        (store / name).write_bytes(b"x")
    (store / (old + ".d")).mkdir()
    (store / PARTIAL_DIR / ("d" * 64)).write_bytes(b"x")
    (store / "README").write_text("not the store's own")
    past = time.time() - 100
    for path in (store / kept, store / old, store / (old + ".d"), store / PARTIAL_DIR / ("d" * 64)):
        os.utime(path, (past, past))
    removed = collect(str(store), {kept}, grace_s=50)
    assert sorted(Path(p).name for p in removed) == [old, old + ".d", "d" * 64]
    assert sorted(p.name for p in store.iterdir()) == sorted([PARTIAL_DIR, "README", kept, young])


@pytest.fixture()
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "tiny"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4k", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_a_full_disk_is_refused_before_and_during_the_download(
    server: FileServer, served: Path, ca: Dict[str, Path], tiny_disk: Path
) -> None:
    store = tiny_disk / "store"
    source = remote(server, served, "demo-cnn.onnx", store)
    with pytest.raises(FetchError, match=r"not enough free disk space in .*: 6918 bytes to download, \d+ bytes free"):
        Fetcher().ensure("m", [source], settings(store, ca))
    server.content_length = False  # the size shows only while writing
    with pytest.raises(FetchError, match="disk full after"):
        Fetcher().ensure("m", [remote(server, served, "demo-cnn.onnx", store, size=None)], settings(store, ca))
    assert names(store) == []
