"""``plot_timeline``: a job's attempts as bars per node over time, drawn to a PNG with matplotlib.

matplotlib is optional (``pip install straggler[plot]``) and imported only when a plot is
drawn. The figure is drawn on matplotlib's Agg canvas directly (no ``pyplot``), so plotting
neither needs a display nor changes the caller's matplotlib backend.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any, Iterable, Optional, Sequence, Union

__all__ = ["plot_timeline"]

# (outcome, speculative) -> (legend label, colour). Copies are green when they won, pale when
# they lost; killed originals are red: the stragglers a copy beat.
_STYLES: dict[tuple[str, bool], tuple[str, str]] = {
    ("finish", False): ("first attempt won", "#4c72b0"),
    ("finish", True): ("copy won", "#2ca02c"),
    ("kill", False): ("first attempt killed (a copy won)", "#d62728"),
    ("kill", True): ("copy killed (lost the race)", "#f2a541"),
    ("fail", False): ("failed", "#555555"),
    ("fail", True): ("failed", "#555555"),
    ("lost", False): ("lost (its worker died)", "#9467bd"),
    ("lost", True): ("lost (its worker died)", "#9467bd"),
    ("running", False): ("still running", "#bbbbbb"),
    ("running", True): ("still running", "#bbbbbb"),
}
_SLOW_NODE_SHADE = "#fde0dd"


def _bars(events: Iterable[Any]) -> list[tuple[float, float, int, str, bool]]:
    """(start, end, node, outcome, speculative) per attempt; an attempt still running when the
    events were taken ends at the last event's time."""
    started: dict[tuple[int, int], tuple[float, int, bool]] = {}
    bars: list[tuple[float, float, int, str, bool]] = []
    last = -math.inf
    for event in events:
        last = max(last, event.time)
        key = (event.task, event.attempt)
        if event.kind == "start":
            started[key] = (event.time, event.node, bool(event.speculative))
        else:
            begun = started.pop(key, None)
            if begun is None:
                raise ValueError(f"events: {event.kind!r} of task {event.task} attempt {event.attempt} without a start")
            bars.append((begun[0], event.time, begun[1], event.kind, begun[2]))
    for start, node, speculative in started.values():
        bars.append((start, last, node, "running", speculative))
    return bars


def _lanes(bars: list[tuple[float, float, int, str, bool]]) -> tuple[list[int], list[tuple[int, int]]]:
    """The row of every bar, and the (node, lane) of every row. The bars of one node share
    lanes greedily, first free lane first (a slot each, in effect; a thread pool reports every
    attempt on node 0, so its lanes are its workers). Rows go in node order."""
    order = sorted(range(len(bars)), key=lambda i: (bars[i][2], bars[i][0], bars[i][1]))
    lane_of = [0] * len(bars)
    node_lanes: dict[int, list[float]] = {}  # node -> when each lane is free again
    for i in order:
        start, end, node = bars[i][0], bars[i][1], bars[i][2]
        lanes = node_lanes.setdefault(node, [])
        lane = next((k for k, free_at in enumerate(lanes) if free_at <= start), len(lanes))
        if lane == len(lanes):
            lanes.append(end)
        lanes[lane] = end
        lane_of[i] = lane
    rows = [(node, lane) for node in sorted(node_lanes) for lane in range(len(node_lanes[node]))]
    index = {key: r for r, key in enumerate(rows)}
    return [index[(bar[2], lane)] for bar, lane in zip(bars, lane_of)], rows


def _panel(ax: Any, events: Sequence[Any], *, label: Optional[str], slow_nodes: Iterable[int]) -> float:
    import numpy as np
    from matplotlib.collections import PolyCollection

    bars = _bars(events)
    if not bars:
        ax.set_title(f"{label + ': ' if label else ''}no attempts")
        return 0.0
    origin = min(bar[0] for bar in bars)
    row_of, rows = _lanes(bars)
    makespan = max(bar[1] for bar in bars) - origin

    slow = set(slow_nodes)
    for r, (node, _) in enumerate(rows):
        if node in slow:
            ax.axhspan(r - 0.5, r + 0.5, color=_SLOW_NODE_SHADE, zorder=0, linewidth=0)

    groups: dict[tuple[str, bool], list[int]] = {}
    for i, bar in enumerate(bars):
        groups.setdefault((bar[3], bar[4]), []).append(i)
    height = 0.8
    for key, members in sorted(groups.items()):
        idx = np.asarray(members)
        x0 = np.array([bars[i][0] for i in members]) - origin
        x1 = np.array([bars[i][1] for i in members]) - origin
        y = np.asarray(row_of)[idx].astype(float)
        verts = np.stack([
            np.column_stack([x0, y - height / 2]), np.column_stack([x1, y - height / 2]),
            np.column_stack([x1, y + height / 2]), np.column_stack([x0, y + height / 2]),
        ], axis=1)
        colour = _STYLES[key][1]
        # A thin edge keeps back-to-back bars apart while rows are tall enough to show it.
        edge = "white" if len(rows) <= 100 else colour
        ax.add_collection(PolyCollection(list(verts), facecolors=colour, edgecolors=edge, linewidths=0.3, zorder=2))
    ax.set_ylim(len(rows) - 0.5, -0.5)
    ax.axvline(makespan, color="black", linewidth=0.8, linestyle="--", zorder=3)

    if len({node for node, _ in rows}) == 1:
        # One node (a thread or process pool): the rows are the attempts running at once.
        ax.set_yticks(range(len(rows)))
        ax.set_yticklabels([str(lane) for _, lane in rows], fontsize=7)
        ax.set_ylabel(f"lane on node {rows[0][0]}")
        title = f"makespan {makespan:.1f} s"
        ax.set_title(f"{label}: {title}" if label else title, fontsize=10)
        ax.grid(axis="x", linewidth=0.3, alpha=0.5)
        return makespan
    # Label one row per node, thinned to about 40 labels.
    firsts = [r for r, (node, lane) in enumerate(rows) if lane == 0]
    step = max(1, math.ceil(len(firsts) / 40))
    ticks = firsts[::step]
    ax.set_yticks(ticks)
    ax.set_yticklabels([str(rows[r][0]) for r in ticks], fontsize=7)
    for tick, r in zip(ax.get_yticklabels(), ticks):
        if rows[r][0] in slow:
            tick.set_color("#b2182b")
    ax.set_ylabel("node")
    title = f"makespan {makespan:.1f} s"
    ax.set_title(f"{label}: {title}" if label else title, fontsize=10)
    ax.grid(axis="x", linewidth=0.3, alpha=0.5)
    return makespan


def _as_panel(item: Any) -> tuple[Sequence[Any], tuple[int, ...], Optional[str]]:
    events = getattr(item, "events", None)
    if events is not None and not callable(events):  # a SimulationResult
        return events, tuple(item.slow_nodes), item.policy
    if callable(events):  # a SpeculativeExecutor
        return events(), (), None
    return list(item), (), None


def plot_timeline(
    timeline: Any,
    path: Union[str, "os.PathLike[str]"],
    *,
    title: Optional[str] = None,
    slow_nodes: Optional[Iterable[int]] = None,
    width: float = 11.0,
) -> None:
    """Draw the attempts of a job as horizontal bars, one row per node slot, over time, to
    ``path`` (PNG; the format follows the file's extension).

    ``timeline``: a ``SimulationResult``, a ``SpeculativeExecutor`` (its ``events()``), a
    sequence of ``AttemptEvent`` records, or a mapping ``{label: any of those}`` for panels
    stacked on one time axis (e.g. no speculation against a policy). Colours tell first
    attempts from copies, winners from killed losers and failures; slow nodes (a simulation's,
    or ``slow_nodes``) are shaded; the dashed line is the makespan, which each panel's title
    gives. Times start at the first attempt's start.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.patches import Patch
    except ImportError:
        raise ImportError("plot_timeline needs matplotlib: pip install 'straggler[plot]'") from None
    if isinstance(width, bool) or not isinstance(width, (int, float)):
        raise TypeError(f"width must be a number of inches, got {width!r}")
    if not (math.isfinite(width) and width > 0):
        raise ValueError(f"width must be a positive number of inches, got {width!r}")
    path = os.fspath(path)
    if isinstance(timeline, Mapping):
        items = list(timeline.items())
        if not items:
            raise ValueError("timeline: an empty mapping has nothing to draw")
    else:
        items = [(None, timeline)]
    panels = []
    for label, item in items:
        events, slow, own_label = _as_panel(item)
        if slow_nodes is not None:
            slow = tuple(slow_nodes)
        panels.append((label if label is not None else own_label, events, slow))

    # One row per node slot; tall enough to read a few dozen slots, capped for big clusters.
    heights = []
    for _, events, _ in panels:
        rows = len(_lanes(_bars(events))[1])
        heights.append(min(8.0, max(1.8, 0.9 + 0.14 * max(rows, 1))))
    figure = Figure(figsize=(width, sum(heights) + 1.3), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(panels), 1, sharex=True, squeeze=False,
                           gridspec_kw={"height_ratios": heights})[:, 0]
    makespans = []
    for ax, (label, events, slow) in zip(axes, panels):
        makespans.append(_panel(ax, events, label=label, slow_nodes=slow))
    axes[-1].set_xlabel("time (s)")
    # The panels share one time axis: the longest run sets it, so the runs compare at a glance.
    longest = max(makespans)
    axes[0].set_xlim(0, longest * 1.02 if longest > 0 else 1.0)

    used = set()
    for _, events, _ in panels:
        for _start, _end, _node, outcome, speculative in _bars(events):
            used.add(_STYLES[(outcome, speculative)])
    handles = [Patch(facecolor=colour, label=name) for name, colour in dict.fromkeys(
        style for style in _STYLES.values() if style in used)]
    if any(slow for _, _, slow in panels):
        handles.append(Patch(facecolor=_SLOW_NODE_SHADE, label="slow node"))
    handles.append(Patch(facecolor="none", edgecolor="black", linestyle="--", label="makespan"))
    figure.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 4), fontsize=8,
                  frameon=False)
    if title is None:
        title = "straggler timeline" if len(panels) > 1 else f"straggler timeline: makespan {makespans[0]:.1f} s"
    figure.suptitle(title, fontsize=12)
    figure.savefig(path, dpi=110)
