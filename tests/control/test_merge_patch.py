from __future__ import annotations

from typing import Any

import pytest

from edged.control.merge_patch import merge_patch

# The test vectors of RFC 7396, appendix A.
CASES = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    (["a", "b"], ["c", "d"], ["c", "d"]),
    ({"a": "b"}, ["c"], ["c"]),
    ({"a": "foo"}, None, None),
    ({"a": "foo"}, "bar", "bar"),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
]


@pytest.mark.parametrize(("target", "patch", "expected"), CASES)
def test_rfc7396_vectors(target: Any, patch: Any, expected: Any) -> None:
    assert merge_patch(target, patch) == expected


def test_inputs_are_not_modified() -> None:
    target = {"a": {"b": [1]}}
    patch = {"a": {"c": 2}}
    result = merge_patch(target, patch)
    result["a"]["b"].append(2)
    assert target == {"a": {"b": [1]}} and patch == {"a": {"c": 2}}
