"""JSON Lines written a batch of lines at a time, and a disk that fills under them: no line
torn or repeated for good, what was not written held and written first once there is room,
and a bounded hold (edged/pipeline/sinks.py)."""

from __future__ import annotations

import contextlib
import errno
import json
import os
from pathlib import Path
from typing import Any, Dict, List

import pytest

from edged.pipeline.sinks import HOLD_S, JsonLinesSink, ResultsHeld, ResultsRefused, StreamSink
from tests.faults.test_plan_cache import _fill, _tiny_tmpfs


class SmallDisk:
    """``os.write``'s contract on a disk with ``room`` bytes left: a short write when the
    data does not fit, ENOSPC once nothing does."""

    def __init__(self, room: int) -> None:
        self.room = room
        self.data = bytearray()
        self.calls = 0

    def __call__(self, data: bytes) -> int:
        self.calls += 1
        if self.room == 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        written = min(len(data), self.room)
        self.data += data[:written]
        self.room -= written
        return written

    def seqs(self) -> List[int]:
        return [json.loads(line)["seq"] for line in self.data.decode().splitlines()]


def test_results_are_written_a_batch_of_lines_at_a_time() -> None:
    disk = SmallDisk(1 << 20)
    sink = StreamSink(disk, "results", flush_every=3)
    sink.write({"seq": 0})
    sink.write({"seq": 1})
    assert disk.calls == 0  # held until the batch is full
    sink.write({"seq": 2})
    assert disk.calls == 1 and disk.seqs() == [0, 1, 2]
    sink.write({"seq": 3})
    sink.flush()  # a quiet spell: what is held goes out
    assert disk.seqs() == [0, 1, 2, 3]


def test_a_disk_full_mid_line_leaves_the_file_whole_once_there_is_room() -> None:
    disk = SmallDisk(25)  # room for one line (20 bytes) and part of the next
    sink = StreamSink(disk, "results", flush_every=2)
    sink.write({"seq": 0, "pad": "x"})
    with pytest.raises(ResultsHeld, match=r"results: \d+ bytes of results held: No space left on device"):
        sink.write({"seq": 1, "pad": "x"})
    assert not disk.data.endswith(b"\n")  # torn, for now
    for seq in range(2, 6):
        with contextlib.suppress(ResultsHeld):  # held, to be written once there is room
            sink.write({"seq": seq, "pad": "x"})
    disk.room = 1 << 20  # the operator freed space
    sink.flush()
    assert disk.seqs() == [0, 1, 2, 3, 4, 5]  # every line whole, none twice, in order
    assert sink.held_bytes == 0


def test_past_the_hold_new_results_are_refused_and_the_held_ones_kept() -> None:
    disk = SmallDisk(0)
    sink = StreamSink(disk, "results", flush_every=1, hold_bytes=30)
    kept, refused = [], []
    for seq in range(6):
        try:
            sink.write({"seq": seq})
            kept.append(seq)
        except ResultsHeld:
            kept.append(seq)
        except ResultsRefused as exc:
            assert "bytes of results unwritten" in str(exc)
            refused.append(seq)
    assert refused and kept == [seq for seq in range(6) if seq not in refused]
    assert sink.held_bytes < 30 + len('{"seq":0}\n')  # bounded: at most one record past the hold
    disk.room = 1 << 20
    sink.flush()
    assert disk.seqs() == kept


def test_a_real_full_disk_and_its_return(tmp_path: Path) -> None:
    with _tiny_tmpfs(tmp_path / "data", 64) as data:
        path = data / "results.jsonl"
        sink = JsonLinesSink(str(path), flush_every=4)
        for seq in range(8):
            sink.write({"seq": seq, "pad": "x" * 100})
        _fill(data / "filler")
        held = 0
        for seq in range(8, 400):
            try:
                sink.write({"seq": seq, "pad": "x" * 100})
            except ResultsHeld:
                held += 1
        assert held > 0 and sink.held_bytes > 0
        (data / "filler").unlink()
        sink.close()
        lines = path.read_text().splitlines()
        assert [json.loads(line)["seq"] for line in lines] == list(range(400))


def test_a_result_is_held_at_most_a_second(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [100.0]
    monkeypatch.setattr("edged.pipeline.sinks.time.monotonic", lambda: clock[0])
    disk = SmallDisk(1 << 20)
    sink = StreamSink(disk, "results", flush_every=64)
    sink.write({"seq": 0})
    clock[0] += HOLD_S / 2
    sink.write({"seq": 1})
    assert disk.calls == 0
    clock[0] += HOLD_S / 2
    sink.write({"seq": 2})  # seq 0 is a second old: a camera at a few frames a second
    assert disk.seqs() == [0, 1, 2]


def test_two_sinks_on_one_file_and_a_full_disk_leave_only_whole_lines(tmp_path: Path) -> None:
    """A reload starts a model's new pipeline beside the draining old one: two sinks append
    to one file, and the disk fills under them."""
    with _tiny_tmpfs(tmp_path / "data", 64) as data:
        path = data / "results.jsonl"
        old = JsonLinesSink(str(path), flush_every=1)
        old.write({"seq": 0, "by": "old"})
        _fill(data / "filler")
        for seq in range(1, 2000):  # until the disk cuts a line short
            try:
                old.write({"seq": seq, "by": "old", "pad": "x" * 300})
            except ResultsHeld:
                break
        assert old.held_bytes > 0 and path.read_bytes().endswith(b"\n")  # the torn part taken off
        new = JsonLinesSink(str(path), flush_every=1)
        (data / "filler").unlink()
        new.write({"seq": 0, "by": "new"})
        old.close()
        new.close()
        records = [json.loads(line) for line in path.read_text().splitlines()]  # every line whole
        olds = [r["seq"] for r in records if r["by"] == "old"]
        assert olds == list(range(seq + 1)) and [r["seq"] for r in records if r["by"] == "new"] == [0]


def test_a_file_a_power_cut_left_mid_line_gets_its_next_result_on_a_line_of_its_own(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    path.write_bytes(b'{"seq":0}\n{"seq":')
    sink = JsonLinesSink(str(path), flush_every=1)
    sink.write({"seq": "after"})
    sink.close()
    assert path.read_text().splitlines() == ['{"seq":0}', '{"seq":', '{"seq":"after"}']


def test_results_a_closing_sink_cannot_write_are_reported_lost(tmp_path: Path) -> None:
    with _tiny_tmpfs(tmp_path / "data", 64) as data:
        path = data / "results.jsonl"
        sink = JsonLinesSink(str(path), flush_every=64)
        _fill(data / "filler")
        for seq in range(40):
            sink.write({"seq": seq, "pad": "x" * 300})
        with pytest.raises(OSError, match=r"results.jsonl: \d+ bytes of results lost at close"):
            sink.close()
        assert path.read_text() == "" or path.read_text().endswith("\n")


def test_a_sink_reports_its_trouble_until_everything_held_is_written() -> None:
    disk = SmallDisk(0)
    sink = StreamSink(disk, "results.jsonl", flush_every=1)
    assert sink.trouble() is None
    with contextlib.suppress(ResultsHeld):
        sink.write({"seq": 0})
    assert sink.trouble() == {"error": "results.jsonl: No space left on device", "held_bytes": len('{"seq":0}\n')}
    disk.room = 1 << 20
    sink.flush()
    assert sink.trouble() is None and disk.seqs() == [0]


def _seqs_of(path: Path) -> List[int]:
    return [json.loads(line)["seq"] for line in path.read_text().splitlines()]


def test_a_file_past_its_size_is_rotated_and_only_keep_of_them_stay(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    sink = JsonLinesSink(str(path), flush_every=10, max_bytes=1000, keep=2)
    for seq in range(500):
        sink.write({"seq": seq, "pad": "x" * 20})
    sink.close()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["results.jsonl", "results.jsonl.1", "results.jsonl.2"]
    assert all(p.stat().st_size < 1000 + 10 * 40 for p in tmp_path.iterdir())  # a flush's worth past the size
    kept = _seqs_of(tmp_path / "results.jsonl.2") + _seqs_of(tmp_path / "results.jsonl.1") + _seqs_of(path)
    assert kept == list(range(kept[0], 500)) and kept[0] > 0  # the newest, whole, in order; the oldest gone


def test_a_file_moved_away_is_followed_to_a_new_one(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    sink = JsonLinesSink(str(path), flush_every=1)
    sink.write({"seq": 0})
    path.rename(tmp_path / "results.jsonl.old")  # logrotate's move, without telling anyone
    sink.write({"seq": 1})
    sink.close()
    assert _seqs_of(tmp_path / "results.jsonl.old") == [0] and _seqs_of(path) == [1]


def test_two_sinks_on_one_file_rotate_it_without_losing_a_line(tmp_path: Path) -> None:
    """A reload's new pipeline beside the draining old one, both rotating the same file."""
    path = tmp_path / "results.jsonl"
    old = JsonLinesSink(str(path), flush_every=5, max_bytes=600, keep=50)
    new = JsonLinesSink(str(path), flush_every=5, max_bytes=600, keep=50)
    for seq in range(300):
        old.write({"seq": seq, "by": "old"})
        new.write({"seq": seq, "by": "new"})
    old.close()
    new.close()
    records = [json.loads(line) for p in tmp_path.iterdir() for line in p.read_text().splitlines()]
    for who in ("old", "new"):
        assert sorted(r["seq"] for r in records if r["by"] == who) == list(range(300))


def test_the_config_sets_the_rotation_and_refuses_a_bad_one(tmp_path: Path) -> None:
    from edged.config import parse_config
    from edged.errors import ConfigError
    from edged.pipeline.sinks import create_sink

    def doc(**sink: Any) -> Dict[str, Any]:
        entry = {"name": "m", "path": "/m.onnx", "sink": dict(sink, type="jsonl", path=str(tmp_path / "r.jsonl"))}
        return {"device": {"id": "t"}, "models": [entry]}

    sink = create_sink(parse_config(doc(max_mb=1, keep=1)).models[0].sink)
    for seq in range(6000):  # about 1.3 MB
        sink.write({"seq": seq, "pad": "x" * 200})
    sink.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.jsonl", "r.jsonl.1"]
    with pytest.raises(ConfigError, match=r"models\[0\]\.sink.*max_mb"):
        parse_config(doc(max_mb=-1))
