"""The sources: list beside the one-source spelling: ids, per-source keys, clear errors."""

from __future__ import annotations

from typing import Any, Dict

import pytest

from edged.config import parse_config
from edged.errors import ConfigError
from edged.model_changes import diff_sources
from edged.model_state import Counters, SourceState
from edged.status import status_lines, status_summary


def _doc(model: Dict[str, Any]) -> Dict[str, Any]:
    return {"device": {"id": "n"}, "models": [dict({"name": "m", "path": "/m.onnx"}, **model)]}


def test_the_one_source_spelling_is_a_list_of_one_named_main() -> None:
    model = parse_config(_doc({"source": {"type": "synthetic", "fps": 5}, "queue_size": 7})).models[0]
    assert [(s.id, s.plugin.type, s.queue_size) for s in model.sources] == [("main", "synthetic", 7)]
    assert model.source is model.sources[0].plugin and model.source.get("fps") == 5


def test_sources_keep_their_ids_and_bounds_and_the_default_source_is_not_added() -> None:
    config = parse_config(
        _doc(
            {
                "queue_size": 9,
                "sources": [
                    {"id": "door", "type": "rtsp", "url": "rtsp://cam/1", "fps": 5, "queue_size": 2},
                    {"id": "yard", "type": "synthetic"},
                ],
            }
        )
    )
    model = config.models[0]
    assert [(s.id, s.queue_size) for s in model.sources] == [("door", 2), ("yard", 9)]
    assert "id" not in model.sources[0].plugin.params and model.sources[0].plugin.get("fps") == 5
    assert "source" not in config.document["models"][0]


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (
            {"source": {"type": "synthetic"}, "sources": [{"id": "a", "type": "synthetic"}]},
            "models[0]: give source (one) or sources (a list), not both",
        ),
        (
            {"sources": [{"id": "a", "type": "synthetic"}, {"id": "a", "type": "synthetic"}]},
            "models[0].sources[1].id: 'a' is already used by sources[0]",
        ),
        (
            {"sources": [{"id": "a", "type": "synthetic"}, {"type": "synthetic"}]},
            "models[0].sources[1].id: required when a model has several sources",
        ),
        ({"sources": []}, "models[0].sources: [] should be non-empty"),
        ({"sources": [{"id": "a b", "type": "synthetic"}]}, "models[0].sources[0].id: 'a b' does not match"),
        ({"sources": [{"id": "a", "type": "synthetic", "queue_size": 0}]}, "models[0].sources[0].queue_size"),
    ],
)
def test_bad_sources_are_named(model: Dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(_doc(model))
    assert any(p.startswith(message) for p in caught.value.problems), caught.value.problems


def test_only_a_change_of_sources_is_a_source_change() -> None:
    two = [{"id": "a", "type": "synthetic"}, {"id": "b", "type": "synthetic", "fps": 5}]
    old = parse_config(_doc({"sources": two})).models[0]
    new = parse_config(_doc({"sources": [two[0], dict(two[1], fps=10), {"id": "c", "type": "synthetic"}]})).models[0]
    change = diff_sources(old, new)
    assert change is not None and change.as_dict() == {"added": ["c"], "changed": ["b"], "removed": []}
    assert diff_sources(old, parse_config(_doc({"sources": two, "batch": 2})).models[0]) is None


def test_status_shows_each_source_of_a_model_with_several_and_systemd_the_unwell_ones(
    demo_config: Dict[str, Any],
) -> None:
    from dataclasses import replace

    from edged.daemon import Daemon

    daemon = Daemon(parse_config(demo_config))
    state = daemon.snapshot()
    model = replace(
        state.models["demo"],
        state="running",
        counters=None,
        sources=(
            SourceState("door", "rtsp", "reconnecting", "connection refused", 2.5, 10, 8, {"queue_full": 2}),
            SourceState("yard", "synthetic", "live", frames_in=5, frames_out=5),
        ),
    )
    state = replace(state, models={"demo": model})
    lines = status_lines(state)
    assert "  demo/door: reconnecting (retry in 2.5 s): connection refused in 10 out 8 dropped 2" in lines
    assert "  demo/yard: live in 5 out 5 dropped 0" in lines
    serving = replace(state, models={"demo": replace(model, counters=Counters(15, 13, {"queue_full": 2}, 4, 13, 0.0))})
    assert status_summary(serving) == "1/1 models serving; demo: source door reconnecting"
