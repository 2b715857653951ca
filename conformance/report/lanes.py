"""Histories of parallel cases drawn as lanes: one lane per thread, one bar per operation.

A view for report.html (DESIGN.md principle 9: reports are functions of the stream): it reads a
case's `history` from report.json (the records `callgate.conformance.cases.parallel` kept: thread, started,
ended, operation, observed code) and lays it out on a common time axis. The template draws the
bars as inline SVG and escapes every text; nothing here produces markup.

The horizontal axis is the order of events, not time: a history's operations often last
microseconds beside a prefix of milliseconds, and bars drawn to scale were a few pixels wide with
their labels cut. Each bar is as wide as its label needs; which operations overlapped and which
came first read as they happened, and the real times are in each bar's tooltip.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from callgate.conformance.results import outputs_text

# The picture fills at least the page's content width; a history whose labels need more is
# wider and scrolls inside its figure, so that no label is ever cut.
WIDTH = 1180
LABEL = 84  # the lane names' column
LANE = 30
BAR = 20
CHAR = 7.3  # the width of one character of the bars' 12 px monospace font
GAP = 8.0  # between one event and the next on the axis
PAD = 10.0  # inside a bar, around its label


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


def label_width(label: str) -> float:
    """How wide a bar must be to show `label` whole."""
    return len(label) * CHAR + 2 * PAD


def _lane_order(thread: str) -> tuple[int, str]:
    if thread == "prefix":
        return 0, ""
    if thread == "suffix":
        return 2, ""
    return 1, thread.rjust(12)


def _axis(ends: list[tuple[float, float | None]], needs: list[float]) -> list[tuple[float, float]]:
    """Where each operation's bar starts and ends on an axis of events, not of time.

    Invocations and responses are placed in their order in time, each at least GAP after the one
    before, and a response at least its label's width after its own invocation: which operations
    overlap, and which came first, read as they happened, and every label fits its bar. An
    operation with no response (`None`) ends with the picture."""
    events = sorted([(start, 1, i) for i, (start, _) in enumerate(ends)]
                    + [(end, 0, i) for i, (_, end) in enumerate(ends) if end is not None])
    left: dict[int, float] = {}
    right: dict[int, float] = {}
    at = float(LABEL) + GAP
    for _, is_start, i in events:  # a response before an invocation at the same instant
        if is_start:
            left[i] = at
            at += GAP
        else:
            right[i] = max(at, left[i] + needs[i])
            at = right[i] + GAP
    last = max([at, *(left[i] + needs[i] + GAP for i in left if i not in right)])
    return [(left[i], right.get(i, last)) for i in range(len(ends))]


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
    labels, titles, statuses, ends = [], [], [], []
    for h in timed:
        thread = str(h.get("thread") or "main")
        start = float(h["started"])
        ended = float(h.get("ended") or 0.0)
        unknown = h.get("code") is None
        args = ", ".join(f"{k}={v}" for k, v in (h.get("args") or {}).items())
        call = f"{h.get('slot')}.{h.get('op')}({args})"
        result = "no answer (outcome unknown)" if unknown else str(h.get("code_name")
                                                                    or h.get("code"))
        status = "unknown" if unknown else ("ok" if h.get("ok", True) else "bad")
        title = (f"{thread}: {call} -> {result}; invoked +{(start - t0) * 1000:.3f} ms"
                 + ("" if unknown or ended <= 0 else f", returned +{(ended - t0) * 1000:.3f} ms"))
        if h.get("outputs"):
            title += f"; outputs {outputs_text(h['outputs'])}"
        if h.get("state_before"):
            title += f"\n  state before: {h['state_before']}"
        for allowed in (h.get("allowed") or [])[:6] if status != "ok" else []:
            title += f"\n  allowed {allowed}"
        labels.append(f"{h.get('op')} → {'no answer' if unknown else result.split(' (')[0]}")
        titles.append(title)
        statuses.append(status)
        ends.append((start, None if unknown or ended <= 0 else max(ended, start)))
    placed = _axis(ends, [label_width(label) for label in labels])
    right_edge = max(end for _, end in placed) + GAP
    # A short history is spread over the page's width (positions only: text keeps its size).
    stretch = max(1.0, (WIDTH - LABEL - GAP) / (right_edge - LABEL))
    bars = []
    for h, label, title, status, (x0, x1) in zip(timed, labels, titles, statuses, placed,
                                                 strict=True):
        x = LABEL + (x0 - LABEL) * stretch
        width = (x1 - x0) * stretch
        bars.append(Bar(round(x, 1), ys[str(h.get("thread") or "main")], round(width, 1), label,
                        title, status))
    width = int(max(WIDTH, LABEL + (right_edge - LABEL) * stretch + GAP))
    height = int(8 + len(names) * LANE + 18)
    return Lanes(tuple((n, ys[n]) for n in names), tuple(bars), width, height, span * 1000.0)
