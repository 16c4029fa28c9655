"""A job's events on disk: straggler's own JSON-lines log (versioned, read back by
``read_events``) and the Chrome trace-event format (Perfetto and ``chrome://tracing`` open it).

Both writers take any sequence of ``AttemptEvent`` records: the executor's ``events()`` or a
simulation's ``SimulationResult.events``.

The JSON-lines log, schema ``straggler.events`` version 1
---------------------------------------------------------
UTF-8, one JSON object per line. The first line is a header::

    {"schema": "straggler.events", "version": 1, "time_unit": "s", "fields": [...]}

Every other line is one ``AttemptEvent``, in the order the events happened::

    {"kind": "start", "time": 12.5, "task": 7, "attempt": 1, "stage": "map", "node": 0,
     "speculative": true, "elapsed": 4.1, "threshold": 3.0}

- ``kind`` (str): "start", "finish", "fail", "kill" or "lost"; ``time`` (float, seconds) on
  the producer's clock (the executor's ``time.monotonic`` or the simulation's virtual time:
  only differences between times mean something); ``task`` and ``attempt`` (int; attempt 0
  is the first); ``stage`` (str); ``node`` (int); ``speculative`` (bool: a copy started while
  another attempt of its task ran).
- Present only when they apply: ``elapsed`` and ``threshold`` (float, seconds) on the start of
  an attempt the policy asked for (a copy, or a kill-and-restart's new attempt): how long the
  attempt it copied had run, and the policy's threshold; ``reason`` (str): "restart",
  "timeout" or "heartbeat_timeout"; ``limit`` (float, seconds) with a timeout's reason.

A reader must refuse a header whose ``schema`` differs or whose ``version`` is newer than it
knows, and ignore keys it does not know (later minor additions add keys, never change them).
"""

from __future__ import annotations

import errno
import json
import math
import os
import uuid
from typing import Any, Iterable, Optional, Union

from straggler._records import EVENT_KINDS, AttemptEvent

__all__ = ["FORMATS", "SCHEMA", "VERSION", "read_events", "write_events"]

SCHEMA = "straggler.events"
VERSION = 1
FORMATS = ("jsonl", "chrome")
_FIELDS = ("kind", "time", "task", "attempt", "stage", "node", "speculative")
_OPTIONAL = ("elapsed", "threshold", "reason", "limit")

PathArg = Union[str, "os.PathLike[str]"]


def write_events(events: Iterable[AttemptEvent], path: PathArg, format: str = "jsonl") -> None:
    """Write ``events`` (``AttemptEvent`` records, e.g. ``ex.events()`` or
    ``simulate(...).events``) to ``path``.

    ``format="jsonl"``: straggler's versioned JSON-lines log (see this module's docstring; read
    it back with ``read_events``). ``format="chrome"``: a Chrome trace-event JSON object
    (``{"traceEvents": [...]}``): each attempt a complete ("X") slice, one process per node and
    one thread per slot, so that attempts that overlap on a node never share a track; the
    slice's ``name``, ``cat``, ``cname`` (colour) and ``args`` tell the winner, copies, kills,
    failures, timeouts and lost attempts apart; each decision of the policy (a copy, a
    restart) is an instant ("i") event on the track of the attempt it copied. Times are
    microseconds from the first event (``otherData.time_origin`` holds that event's time).

    The file is written whole or not at all (a temporary file beside it, renamed into place).
    A bad ``format`` is a ``ValueError``, a directory or a path that cannot be written an
    ``OSError``, both naming the argument; nothing is written then.
    """
    if not isinstance(format, str) or format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(map(repr, FORMATS))}, got {format!r}")
    target = _target(path)
    rows = _checked(events)
    if format == "jsonl":
        text = _jsonl(rows)
    else:
        text = json.dumps(chrome_trace(rows), allow_nan=False, separators=(",", ":")) + "\n"
    _write(target, text)


def read_events(path: PathArg) -> list[AttemptEvent]:
    """Read a JSON-lines log written by ``write_events(..., format="jsonl")`` back into the
    same ``AttemptEvent`` records. A file that is not such a log (no header, another schema, a
    newer version, a malformed line) is a ``ValueError`` that names the line."""
    target = _target(path)
    events: list[AttemptEvent] = []
    with open(target, encoding="utf-8") as f:
        header_seen = False
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError as exc:
                raise ValueError(f"{target}:{number}: not JSON ({exc})") from None
            if not isinstance(obj, dict):
                raise ValueError(f"{target}:{number}: expected a JSON object, got {type(obj).__name__}")
            if not header_seen:
                _check_header(obj, f"{target}:{number}")
                header_seen = True
                continue
            events.append(_event(obj, f"{target}:{number}"))
    if not header_seen:
        raise ValueError(f"{target}: empty; not a {SCHEMA} log")
    return events


# --- JSON lines -------------------------------------------------------------------------------


def _header() -> dict[str, Any]:
    return {"schema": SCHEMA, "version": VERSION, "time_unit": "s", "fields": list(_FIELDS + _OPTIONAL)}


def _jsonl(rows: list[AttemptEvent]) -> str:
    dumps = json.JSONEncoder(allow_nan=False, separators=(",", ":")).encode
    lines = [dumps(_header())]
    for e in rows:
        obj: dict[str, Any] = {
            "kind": e.kind, "time": e.time, "task": e.task, "attempt": e.attempt, "stage": e.stage,
            "node": e.node, "speculative": e.speculative,
        }
        for name in _OPTIONAL:
            value = getattr(e, name)
            if value is not None:
                obj[name] = value
        lines.append(dumps(obj))
    lines.append("")
    return "\n".join(lines)


def _check_header(obj: dict, where: str) -> None:
    if obj.get("schema") != SCHEMA:
        raise ValueError(f"{where}: not a {SCHEMA} log (its first line must be the header "
                         f'{{"schema": "{SCHEMA}", "version": {VERSION}, ...}})')
    version = obj.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ValueError(f"{where}: the header's version must be a positive integer, got {version!r}")
    if version > VERSION:
        raise ValueError(f"{where}: {SCHEMA} version {version} is newer than this straggler reads ({VERSION})")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:40] + f"... ({len(text)} characters)"


def _event(obj: dict, where: str) -> AttemptEvent:
    missing = [name for name in _FIELDS if name not in obj]
    if missing:
        raise ValueError(f"{where}: missing {', '.join(missing)}")
    kind, time, task, attempt, stage, node, speculative = (obj[name] for name in _FIELDS)
    if kind not in EVENT_KINDS:
        raise ValueError(f"{where}: kind must be one of {', '.join(EVENT_KINDS)}, got {kind!r}")
    for name, value in (("task", task), ("attempt", attempt), ("node", node)):
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"{where}: {name} must be an integer, got {value!r}")
    if not isinstance(stage, str):
        raise ValueError(f"{where}: stage must be a string, got {stage!r}")
    if not isinstance(speculative, bool):
        raise ValueError(f"{where}: speculative must be true or false, got {speculative!r}")
    extras: dict[str, Any] = {}
    for name in ("time", "elapsed", "threshold", "limit"):
        value = obj.get(name)
        if value is None and name != "time":
            continue
        try:
            number = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan
        except OverflowError:  # an integer no float holds (JSON has no bound on them)
            number = math.nan
        if not math.isfinite(number):
            raise ValueError(f"{where}: {name} must be a finite number, got {_short(value)}")
        extras[name] = number
    reason = obj.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise ValueError(f"{where}: reason must be a string, got {reason!r}")
    return AttemptEvent(kind, extras.pop("time"), task, attempt, stage, node, speculative,
                        reason=reason, **extras)


# --- Chrome trace-event format ------------------------------------------------------------------

# Colours from the trace viewer's reserved names (chrome://tracing honours them; Perfetto
# colours by name, which the labels below keep distinct).
_COLOUR = {
    "finish": "good", "copy finish": "olive", "kill": "grey", "copy kill": "grey",
    "restart kill": "generic_work", "fail": "bad", "copy fail": "bad", "timeout": "terrible",
    "heartbeat timeout": "terrible", "lost": "black", "copy lost": "black", "running": "yellow",
    "copy running": "yellow",
}
_DECISION_COLOUR = "rail_response"


def _label(start: Optional[AttemptEvent], end: Optional[AttemptEvent]) -> str:
    some = end if end is not None else start
    assert some is not None
    copy = "copy " if some.speculative else ""
    if end is None:
        return copy + "running"
    if end.kind == "fail" and end.reason in ("timeout", "heartbeat_timeout"):
        return end.reason.replace("_", " ")
    if end.kind == "kill" and end.reason == "restart":
        return "restart kill"
    return copy + end.kind


def chrome_trace(events: Iterable[AttemptEvent]) -> dict[str, Any]:
    """The trace-event JSON object for ``events`` (see ``write_events``)."""
    rows = list(events)
    t0 = min((e.time for e in rows), default=0.0)
    t_last = max((e.time for e in rows), default=0.0)

    def us(t: float) -> int:
        return round((t - t0) * 1e6)

    # Pair each start with its end (an engine may run an attempt number again after losing
    # it: the pairs follow the log's order). A start whose end is not in the log (the attempt
    # still ran) becomes a slice up to the last event; an end whose start the bounded log
    # dropped, an instant event.
    open_: dict[tuple[int, int], AttemptEvent] = {}
    spans: list[tuple[Optional[AttemptEvent], Optional[AttemptEvent]]] = []
    for e in rows:
        key = (e.task, e.attempt)
        if e.kind == "start":
            earlier = open_.pop(key, None)
            if earlier is not None:
                spans.append((earlier, None))
            open_[key] = e
        else:
            spans.append((open_.pop(key, None), e))
    spans.extend((start, None) for start in open_.values())

    trace: list[dict[str, Any]] = []
    slices: list[tuple[int, int, int, AttemptEvent, Optional[AttemptEvent]]] = []
    for start, end in spans:
        if start is None:
            assert end is not None
            trace.append({
                "name": _label(None, end), "cat": "attempt,unpaired", "ph": "i", "s": "p", "ts": us(end.time),
                "pid": end.node, "tid": 0, "cname": _COLOUR.get(_label(None, end), "grey"),
                "args": _args(None, end),
            })
            continue
        begin = us(start.time)
        finish = us(end.time if end is not None else t_last)
        slices.append((begin, max(finish, begin), start.node, start, end))
    slices.sort(key=lambda s: (s[0], s[1]))

    # Lanes: each slice takes the lowest lane of its node free at its start (touching is not
    # overlapping), so that no two slices on one (pid, tid) overlap.
    lanes: dict[int, list[int]] = {}
    placed: dict[tuple[int, int], list[tuple[int, int, AttemptEvent, Optional[AttemptEvent]]]] = {}
    for begin, finish, node, start, end in slices:
        ends = lanes.setdefault(node, [])
        for lane, free_at in enumerate(ends):
            if free_at <= begin:
                ends[lane] = finish
                break
        else:
            lane = len(ends)
            ends.append(finish)
        label = _label(start, end)
        cat = ["attempt"]
        if start.speculative:
            cat.append("copy")
        cat.append(end.kind if end is not None else "running")
        trace.append({
            "name": label, "cat": ",".join(cat), "ph": "X", "ts": begin, "dur": finish - begin,
            "pid": node, "tid": lane, "cname": _COLOUR.get(label, "grey"), "args": _args(start, end),
        })
        placed.setdefault((start.task, start.attempt), []).append((begin, lane, start, end))

    by_task: dict[int, list[tuple[int, int, AttemptEvent, Optional[AttemptEvent]]]] = {}
    for entries in placed.values():
        for entry in entries:
            by_task.setdefault(entry[2].task, []).append(entry)
    for begin, lane, start, _end in (entry for entries in placed.values() for entry in entries):
        if start.elapsed is None:
            continue
        trace.append(_decision(start, begin, lane, by_task.get(start.task, ()), us))

    meta: list[dict[str, Any]] = []
    for node in sorted(lanes):
        meta.append({"name": "process_name", "ph": "M", "pid": node, "tid": 0, "args": {"name": f"node {node}"}})
        meta.append({"name": "process_sort_index", "ph": "M", "pid": node, "tid": 0, "args": {"sort_index": node}})
        for lane in range(len(lanes[node])):
            meta.append({"name": "thread_name", "ph": "M", "pid": node, "tid": lane,
                         "args": {"name": f"slot {lane}"}})
    return {
        "traceEvents": meta + trace,
        "displayTimeUnit": "ms",
        "otherData": {"schema": SCHEMA, "version": VERSION, "time_origin": t0, "time_unit": "s"},
    }


def _decision(copy: AttemptEvent, begin: int, lane: int, attempts: Any, us: Any) -> dict[str, Any]:
    """The policy's decision behind ``copy`` as an instant event: at the time it was made
    (the copied attempt's start + ``elapsed``) on the copied attempt's track when that attempt
    is in the log, else at the copy's start on the copy's own track."""
    assert copy.elapsed is not None
    where = (copy.time, copy.node, lane, None)
    best = -math.inf
    for _begin, other_lane, other, other_end in attempts:
        if other is copy or other.time > copy.time:
            continue
        decided = other.time + copy.elapsed
        # Running at the decision (a small tolerance for the clock's rounding), and the latest
        # such decision no later than the copy's start.
        if decided > copy.time + 1e-6 or (other_end is not None and other_end.time < decided - 1e-6):
            continue
        if decided > best:
            best = decided
            where = (min(decided, copy.time), other.node, other_lane, other.attempt)
    time, node, track, copied = where
    args: dict[str, Any] = {"task": copy.task, "stage": copy.stage, "attempt": copy.attempt,
                            "elapsed": copy.elapsed, "threshold": copy.threshold}
    if copied is not None:
        args["copied_attempt"] = copied
    return {
        "name": "restart" if copy.reason == "restart" else "copy", "cat": "decision", "ph": "i", "s": "t",
        "ts": us(time), "pid": node, "tid": track, "cname": _DECISION_COLOUR, "args": args,
    }


def _args(start: Optional[AttemptEvent], end: Optional[AttemptEvent]) -> dict[str, Any]:
    some = start if start is not None else end
    assert some is not None
    args: dict[str, Any] = {"task": some.task, "attempt": some.attempt, "stage": some.stage, "node": some.node,
                            "speculative": some.speculative, "outcome": end.kind if end is not None else "running"}
    if start is not None:
        args["start"] = start.time
        if start.elapsed is not None:
            args["elapsed"] = start.elapsed
            args["threshold"] = start.threshold
        if start.reason is not None:
            args["started_for"] = start.reason
    if end is not None:
        args["end"] = end.time
        if start is not None:
            args["seconds"] = end.time - start.time
        if end.reason is not None:
            args["reason"] = end.reason
        if end.limit is not None:
            args["limit"] = end.limit
    return args


# --- files --------------------------------------------------------------------------------------


def _checked(events: Iterable[AttemptEvent]) -> list[AttemptEvent]:
    try:
        rows = list(events)
    except TypeError:
        raise TypeError(f"events must be an iterable of AttemptEvent, got {type(events).__name__}") from None
    for i, e in enumerate(rows):
        if not isinstance(e, AttemptEvent):
            raise TypeError(f"events[{i}] must be an AttemptEvent, got {type(e).__name__}")
        if e.kind not in EVENT_KINDS or not math.isfinite(e.time):
            raise ValueError(f"events[{i}]: not a valid event: {e!r}")
    return rows


def _target(path: Any) -> str:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    target = os.fspath(path)
    if not isinstance(target, str) or not target:
        raise ValueError(f"path must be a non-empty file name, got {path!r}")
    if os.path.isdir(target):
        raise IsADirectoryError(errno.EISDIR, f"path: {target!r} is a directory, not a file")
    return target


def _write(target: str, text: str) -> None:
    """Write ``text`` to ``target`` whole or not at all."""
    directory, name = os.path.split(os.path.abspath(target))
    temporary = os.path.join(directory, f".{name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(temporary, "x", encoding="utf-8") as f:
            f.write(text)
        os.replace(temporary, target)
    except OSError as exc:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise OSError(exc.errno, f"path: cannot write {target!r}: {exc.strerror or exc}") from exc
