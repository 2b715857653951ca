"""Histories of parallel cases drawn as lanes: one lane per thread, one bar per operation.

A view for report.html (DESIGN.md principle 9: reports are functions of the stream): it reads a
case's `history` from report.json (the records `callgate.conformance.cases.parallel` kept: thread, started,
ended, operation, observed code) and lays it out on a common time axis. The template draws the
bars as inline SVG and escapes every text; nothing here produces markup.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

WIDTH = 760
LABEL = 110
LANE = 30
BAR = 20
MIN_BAR = 4


@dataclass(frozen=True)
class Bar:
    """One operation: where it sits, what it says, and how it is drawn."""

    x: float
    y: float
    width: float
    label: str
    title: str
    status: str  # "ok", "bad" (the operation the checker could not place) or "unknown"


@dataclass(frozen=True)
class Lanes:
    """A history laid out: lane names (with their y), bars, and the picture's size."""

    lanes: tuple[tuple[str, float], ...]
    bars: tuple[Bar, ...]
    width: int
    height: int
    span_ms: float


def _fit(label: str, width: float) -> str:
    """The label cut to what fits in a bar `width` pixels wide (about 6.6 px a character)."""
    room = int((width - 6) / 6.6)
    if room >= len(label):
        return label
    return label[:room - 1] + "…" if room >= 3 else ""


def _lane_order(thread: str) -> tuple[int, str]:
    if thread == "prefix":
        return 0, ""
    if thread == "suffix":
        return 2, ""
    return 1, thread.rjust(12)


def lanes(history: Sequence[Mapping[str, Any]]) -> Lanes | None:
    """The lanes of a history, or None if it has no timed operation."""
    timed = [h for h in history if isinstance(h.get("started"), (int, float)) and h["started"]]
    if not timed:
        return None
    t0 = min(float(h["started"]) for h in timed)
    t1 = max(max(float(h["started"]), float(h.get("ended") or 0.0)) for h in timed)
    span = max(t1 - t0, 1e-6)
    names = sorted({str(h.get("thread") or "main") for h in timed}, key=_lane_order)
    ys = {name: 8.0 + i * LANE for i, name in enumerate(names)}
    scale = (WIDTH - LABEL - 10) / span
    bars = []
    for h in timed:
        thread = str(h.get("thread") or "main")
        start = float(h["started"])
        ended = float(h.get("ended") or 0.0)
        unknown = h.get("code") is None
        end = t1 if unknown or ended <= 0 else ended
        x = LABEL + (start - t0) * scale
        width = max(MIN_BAR, (end - start) * scale)
        args = ", ".join(f"{k}={v}" for k, v in (h.get("args") or {}).items())
        call = f"{h.get('slot')}.{h.get('op')}({args})"
        result = "no answer (outcome unknown)" if unknown else str(h.get("code_name")
                                                                    or h.get("code"))
        status = "unknown" if unknown else ("ok" if h.get("ok", True) else "bad")
        title = (f"{thread}: {call} -> {result}; invoked +{(start - t0) * 1000:.3f} ms"
                 + ("" if unknown else f", returned +{(end - t0) * 1000:.3f} ms"))
        if h.get("outputs"):
            title += f"; outputs {h.get('outputs')}"
        for allowed in (h.get("allowed") or [])[:6] if status != "ok" else []:
            title += f"\n  allowed {allowed}"
        bars.append(Bar(round(x, 1), ys[thread], round(width, 1),
                        _fit(f"{h.get('op')} → {result.split(' (')[0]}", width), title, status))
    height = int(8 + len(names) * LANE + 18)
    return Lanes(tuple((n, ys[n]) for n in names), tuple(bars), WIDTH, height, span * 1000.0)
