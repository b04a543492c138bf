"""Plain-text tables for ``edgectl watch`` and ``edgectl devices``."""

from __future__ import annotations

import json
from typing import Any, Dict, List, Mapping, Sequence

__all__ = ["render_table", "telemetry_rows", "status_row"]


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))[:40]
    return str(value)


def render_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] = ()) -> str:
    cols: List[str] = list(columns)
    for row in rows:
        cols += [key for key in row if key not in cols]
    if not cols:
        return "(nothing)"
    cells = [[_cell(row.get(c)) for c in cols] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) if cells else len(c) for i, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in cells]
    return "\n".join(lines)


def _flat(prefix: str, node: Any, out: Dict[str, Any]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            _flat(f"{prefix}.{key}" if prefix else str(key), value, out)
    else:
        out[prefix] = node


def telemetry_rows(message: Mapping[str, Any]) -> List[Dict[str, Any]]:
    """One row per model when the message carries ``models`` (a mapping or a list of
    entries with ``name``), else one row of the message's fields, flattened."""
    models = message.get("models")
    rows: List[Dict[str, Any]] = []
    if isinstance(models, dict):
        for name, entry in models.items():
            row: Dict[str, Any] = {"model": name}
            _flat("", entry, row)
            rows.append(row)
    elif isinstance(models, list):
        for entry in models:
            row = {}
            _flat("", entry, row)
            rows.append(row)
    if rows:
        return rows
    row = {}
    _flat("", {k: v for k, v in message.items() if k != "models"}, row)
    return [row]


def status_row(device: str, payload: bytes) -> Dict[str, Any]:
    """A retained status message (JSON birth message or a bare word such as the
    "offline" last will) as a table row."""
    row: Dict[str, Any] = {"device": device}
    text = payload.decode("utf-8", "replace").strip()
    try:
        doc = json.loads(text)
    except ValueError:
        doc = text
    if isinstance(doc, dict):
        _flat("", doc, row)
    else:
        row["status"] = doc
    return row
