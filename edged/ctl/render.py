"""What a person reads at a terminal: ``edgectl watch`` and ``edgectl devices``.

Every screen is built for a given width (80 to 140 columns is the aim): one row per model or
device, the columns that matter first, numbers right-aligned with their unit in the header,
names shortened with an ellipsis rather than wrapped. ``wide`` adds detail columns for a
wide terminal. Colour (state words only) is added after the layout, so it never changes a
width; it is off when the output is not a terminal or NO_COLOR is set (https://no-color.org).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import IO, Any, Callable, Dict, List, Mapping, Optional, Sequence

__all__ = ["Column", "ago", "color_wanted", "device_row", "devices_screen", "fit", "render_rows", "watch_screen"]

_RESET = "\x1b[0m"
_COLOURS = {"green": "\x1b[32m", "yellow": "\x1b[33m", "red": "\x1b[31m", "dim": "\x1b[2m", "bold": "\x1b[1m"}
# A model's or a device's state word -> colour: serving, on its way, stopped, broken.
_STATE_COLOURS = {
    "running": "green",
    "online": "green",
    "pending": "yellow",
    "checking": "yellow",
    "building": "yellow",
    "ready": "yellow",
    "created": "yellow",
    "draining": "yellow",
    "degraded": "yellow",
    "reconnecting": "yellow",
    "unanswered": "yellow",
    "stopped": "dim",
    "failed": "red",
    "offline": "red",
}
MIN_NAME = 8  # the name column never gets narrower than this


def color_wanted(stream: IO[str]) -> bool:
    return stream.isatty() and not os.environ.get("NO_COLOR")


def _paint(text: str, colour: Optional[str], color: bool) -> str:
    return f"{_COLOURS[colour]}{text}{_RESET}" if color and colour else text


def fit(text: str, width: int) -> str:
    """``text`` in at most ``width`` characters, an ellipsis marking a cut."""
    if len(text) <= width:
        return text
    return text[: max(0, width - 1)] + "…" if width > 0 else ""


def ago(seconds: Optional[float]) -> str:
    """``2 s ago``, ``5 min ago``, ``3 h ago``, ``2 d ago``; ``never`` without a time."""
    if seconds is None or math.isnan(seconds):
        return "never"
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{int(seconds // size)} {unit} ago"
    return f"{int(seconds)} s ago"


def _numeric(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)


def _number(value: Any, digits: int = 1) -> str:
    if not _numeric(value):
        return "-"
    if abs(value) >= 1000:
        return f"{value:.0f}"
    return f"{value:.{digits}f}"


@dataclass(frozen=True)
class Column:
    """A table column: ``cell`` gives a row's text; ``colour`` the colour of that text."""

    header: str
    width: int
    cell: Callable[[Mapping[str, Any]], str]
    right: bool = False
    colour: Optional[Callable[[Mapping[str, Any]], Optional[str]]] = None
    key: str = ""  # shown only when some row has a value under this key ("": always)


def render_rows(
    columns: Sequence[Column],
    rows: Sequence[Mapping[str, Any]],
    width: int,
    color: bool = False,
    keep_name: int = MIN_NAME,
    shrink: bool = False,
) -> List[str]:
    """The header and one line per row. The first column takes the room the others leave;
    while that is less than ``keep_name`` characters of the longest name, columns are dropped
    from the right (a name is what a person looks for; the detail columns come last).
    ``shrink``: columns narrower than their width where every cell is (a listing printed
    once; a refreshing screen keeps its widths, so columns do not jump between frames)."""
    longest = max([len(columns[0].header)] + [len(columns[0].cell(row)) for row in rows])
    fixed = list(columns[1:])
    if shrink:
        fixed = [
            Column(
                c.header, min(c.width, max([len(c.header)] + [len(c.cell(r)) for r in rows])), c.cell, c.right, c.colour
            )
            for c in fixed
        ]
    while fixed and min(longest, max(keep_name, MIN_NAME)) + sum(c.width + 1 for c in fixed) > width:
        fixed.pop()
    name_width = max(MIN_NAME, min(longest, width - sum(c.width + 1 for c in fixed)))
    shown = [Column(columns[0].header, name_width, columns[0].cell, False, columns[0].colour), *fixed]

    def line(cells: Sequence[str], colours: Sequence[Optional[str]]) -> str:
        parts = []
        for column, text, colour in zip(shown, cells, colours):
            text = fit(text, column.width)
            padded = text.rjust(column.width) if column.right else text.ljust(column.width)
            parts.append(_paint(padded, colour, color))
        return " ".join(parts).rstrip()

    out = [line([c.header for c in shown], ["bold"] * len(shown))]
    for row in rows:
        out.append(line([c.cell(row) for c in shown], [c.colour(row) if c.colour else None for c in shown]))
    return out


def _state_colour(key: str) -> Callable[[Mapping[str, Any]], Optional[str]]:
    return lambda row: _STATE_COLOURS.get(str(row.get(key, "")).split(" ", 1)[0])


# -- edgectl watch -----------------------------------------------------------------------


def _model_rows(telemetry: Mapping[str, Any]) -> List[Dict[str, Any]]:
    devices: Mapping[str, Any] = telemetry.get("devices") or {}
    rows = []
    models = telemetry.get("models")
    for name, doc in models.items() if isinstance(models, dict) else ():
        if not isinstance(doc, dict):
            continue
        engines = doc.get("engines") or [doc.get("device", "-")]
        e2e = (doc.get("latency_ms") or {}).get("e2e") or {}
        inference = (doc.get("latency_ms") or {}).get("inference") or {}
        frames = doc.get("frames") or {}
        dropped = frames.get("dropped") or {}
        energy = (devices.get(str(engines[0])) or {}).get("energy_per_inference_mj")
        fps = doc.get("fps")
        rows.append(
            {
                "name": str(name),
                "state": str(doc.get("state", "-")).split(" ", 1)[0],
                "devices": "+".join(dict.fromkeys(str(e) for e in engines)),
                "fps": fps,
                "p50": e2e.get("p50"),
                "p99": e2e.get("p99"),
                "inference_p99": inference.get("p99"),
                "drops": sum(v for v in dropped.values() if isinstance(v, (int, float))),
                "dropped": dropped,
                "frames_in": frames.get("in"),
                "frames_out": frames.get("out"),
                "batch_fill": doc.get("batch_fill"),
                "energy_mj": energy,
                # The model's share of the board: what its frames cost at its device's energy per inference.
                "power_w": fps * energy / 1000.0 if isinstance(fps, (int, float)) and energy is not None else None,
                "source": (doc.get("source") or {}).get("state"),
                "note": doc.get("error") or (doc.get("placement") or {}).get("error"),
            }
        )
    return rows


_MODEL_COLUMNS = (
    Column("MODEL", 0, lambda r: r["name"]),
    Column("STATE", 8, lambda r: r["state"], colour=_state_colour("state")),
    Column("DEVICE", 9, lambda r: r["devices"]),
    Column("FPS", 6, lambda r: _number(r["fps"]), right=True),
    Column("P50 ms", 7, lambda r: _number(r["p50"]), right=True),
    Column("P99 ms", 7, lambda r: _number(r["p99"]), right=True),
    Column("DROPS", 6, lambda r: str(r["drops"]), right=True),
    Column("mJ/INF", 7, lambda r: _number(r["energy_mj"]), right=True),
    Column("~W", 5, lambda r: _number(r["power_w"]), right=True),
)
_WIDE_MODEL_COLUMNS = (
    Column("IN", 9, lambda r: str(r["frames_in"] if r["frames_in"] is not None else "-"), right=True),
    Column("OUT", 9, lambda r: str(r["frames_out"] if r["frames_out"] is not None else "-"), right=True),
    Column("FILL", 5, lambda r: _number(r["batch_fill"], 2), right=True),
    Column("INF p99", 7, lambda r: _number(r["inference_p99"]), right=True),
    Column("SOURCE", 12, lambda r: r["source"] or "-", colour=_state_colour("source")),
)


def _describe_device(status: Mapping[str, Any], wide: bool) -> List[str]:
    """The birth message in words: software, platform, backends, power source."""
    parts = []
    if status.get("version"):
        parts.append(f"edged {status['version']}")
    platform = status.get("platform") or {}
    if isinstance(platform, dict) and platform:
        system = str(platform.get("system", ""))
        # The kernel release is noise at a glance; the wide view keeps it.
        words = [str(platform.get("machine", "")), system if wide else system.split(" ", 1)[0]]
        parts.append(" ".join(w for w in words if w))
    if status.get("backends"):
        parts.append(", ".join(str(b) for b in status["backends"]))
    if status.get("power"):
        parts.append(f"power: {status['power']}")
    return parts


def _health_line(telemetry: Mapping[str, Any]) -> str:
    parts = []
    power = telemetry.get("power") or {}
    if isinstance(power.get("total_mw"), (int, float)):
        parts.append(f"board {power['total_mw'] / 1000.0:.1f} W")
    temps = telemetry.get("temps_c") or {}
    if temps:
        hottest = sorted(temps.items(), key=lambda kv: -kv[1])
        parts.append("temps " + " ".join(f"{zone} {value:.0f}°C" for zone, value in hottest))
    devices = telemetry.get("devices") or {}
    loads = [
        f"{d} {v['util_pct']:.0f}%" for d, v in sorted(devices.items()) if isinstance(v.get("util_pct"), (int, float))
    ]
    if loads:
        parts.append("load " + " ".join(loads))
    mqtt = telemetry.get("mqtt") or {}
    if mqtt.get("dropped_offline"):
        parts.append(f"{mqtt['dropped_offline']} messages lost offline")
    return " · ".join(parts)


def watch_screen(
    device: str,
    status: Optional[Mapping[str, Any]],
    telemetry: Optional[Mapping[str, Any]],
    seen_s: Optional[float],
    width: int,
    wide: bool = False,
    color: bool = False,
) -> List[str]:
    """The lines of one ``edgectl watch`` screen. ``status``: the device's status message
    (None before one arrived); ``seen_s``: seconds since the last telemetry message."""
    status = status or {}
    state = str(status.get("state", "unknown"))
    state_text = state + (f" ({status['reason']})" if state == "offline" and status.get("reason") else "")
    # "last seen" stays whole at the right; the description of the device gives way.
    seen = f"last seen {ago(seen_s)}"
    rest = ""
    description = " · ".join(_describe_device(status, wide))
    room = width - len(device) - len(state_text) - len(seen) - 8
    if description and room >= MIN_NAME:
        rest = " · " + fit(description, room)
    gap = " " * max(2, width - len(device) - len(state_text) - len(rest) - len(seen) - 3)
    painted = _paint(state_text, _STATE_COLOURS.get(state), color)
    first = f"{device} · {painted}{rest}{gap}{seen}"
    lines = [first]
    if telemetry is None:
        return [*lines, "waiting for telemetry…"]
    health = _health_line(telemetry)
    if health:
        lines.append(fit(health, width))
    rows = _model_rows(telemetry)
    if not rows:
        return [*lines, "no models configured"]
    columns = list(_MODEL_COLUMNS) + (list(_WIDE_MODEL_COLUMNS) if wide else [])
    lines += render_rows(columns, rows, width, color)
    notes = [f"{r['name']}: {r['note']}" for r in rows if r["note"]]
    if wide:
        notes += [
            f"{r['name']} drops: " + ", ".join(f"{k} {v}" for k, v in sorted(r["dropped"].items()))
            for r in rows
            if r["drops"]
        ]
    lines += [fit(note, width) for note in notes]
    return lines


# -- edgectl devices ---------------------------------------------------------------------


def device_row(device: str, doc: Any, now: float) -> Dict[str, Any]:
    """A device's retained status (its JSON birth or last will, or a bare word) as a row
    for :func:`devices_screen`; ``now`` is the wall clock (the status carries ``ts``)."""
    row: Dict[str, Any] = {"device": device}
    if not isinstance(doc, dict):
        row["state"] = str(doc) or "unknown"
        return row
    row["state"] = str(doc.get("state", doc.get("status", "unknown")))
    if isinstance(doc.get("version"), str):
        row["software"] = doc["version"]
    if isinstance(doc.get("ts"), (int, float)):
        row["since_s"] = now - float(doc["ts"])
    platform = doc.get("platform")
    if isinstance(platform, dict):
        row["machine"] = platform.get("machine")
        row["system"] = platform.get("system")
    for key in ("backends", "power", "reason", "groups"):
        if doc.get(key):
            row[key] = doc[key]
    return row


def _list(value: Any) -> str:
    return ",".join(str(v) for v in value) if isinstance(value, (list, tuple)) else str(value or "-")


# Rows from device_row, and from a fleet survey's views (config version, models, telemetry
# age): a column appears when some row has its key.
_DEVICE_COLUMNS = (
    Column("DEVICE", 0, lambda r: str(r["device"])),
    Column("STATE", 10, lambda r: str(r.get("state", "-")), colour=_state_colour("state")),
    Column("SINCE", 11, lambda r: ago(r["since_s"]) if r.get("since_s") is not None else "-", key="since_s"),
    Column("SEEN", 11, lambda r: ago(r.get("telemetry_age_s")), key="telemetry_age_s"),
    Column("EDGED", 8, lambda r: str(r.get("software") or "-"), key="software"),
    Column("CONFIG", 6, lambda r: str(r.get("version") if r.get("version") is not None else "-"), True, key="version"),
    Column("MODELS", 16, lambda r: str(r.get("models") or "-"), key="models"),
    Column("MACHINE", 8, lambda r: str(r.get("machine") or "-"), key="machine"),
    Column("BACKENDS", 22, lambda r: _list(r.get("backends")), key="backends"),
    Column("POWER", 14, lambda r: str(r.get("power") or "-"), key="power"),
)
_WIDE_DEVICE_COLUMNS = (
    Column("SYSTEM", 26, lambda r: str(r.get("system") or "-"), key="system"),
    Column("GROUPS", 16, lambda r: _list(r.get("groups")), key="groups"),
    Column("REASON", 20, lambda r: str(r.get("reason") or "-"), key="reason"),
)


def devices_screen(rows: Sequence[Mapping[str, Any]], width: int, wide: bool = False, color: bool = False) -> List[str]:
    """One line per device, sorted by name, and a count by state. Rows come from
    :func:`device_row`, or any mapping with ``device``, ``state`` and the keys above."""
    if not rows:
        return ["no devices seen"]
    ordered = sorted(rows, key=lambda r: str(r["device"]))
    columns = [
        column
        for column in list(_DEVICE_COLUMNS) + (list(_WIDE_DEVICE_COLUMNS) if wide else [])
        if not column.key or any(row.get(column.key) is not None for row in ordered)
    ]
    lines = render_rows(columns, ordered, width, color, keep_name=24, shrink=True)
    states: Dict[str, int] = {}
    for row in ordered:
        states[str(row.get("state", "unknown"))] = states.get(str(row.get("state", "unknown")), 0) + 1
    summary = ", ".join(f"{n} {state}" for state, n in sorted(states.items()))
    return [*lines, fit(f"{len(ordered)} devices: {summary}", width)]
