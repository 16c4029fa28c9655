"""Reading a finished (or still running) job's log into its task attempts, for ``replay``.

Three kinds of log are read:

- A Spark event log as one file of JSON lines (``spark.eventLog.rolling.enabled=false``),
  plain or compressed: the codec is the file name's extension, as Spark names it
  (``app-20260101-0000.zstd``; ``.inprogress`` after it while the application runs).
- Spark 4's default: a rolling directory ``eventlog_v2_<app>`` holding ``events_<n>_<app>[.codec]``
  files, read in the order of n, and an ``appstatus_<app>[.inprogress]`` marker (Spark's
  ``RollingEventLogFilesWriter`` and ``EventLogFileReaders``).
- straggler's own JSON-lines log (``write_events``; schema ``straggler.events``).

Compression: zstd (Spark 4's default codec) through ``compression.zstd`` (CPython 3.14+) or the
``zstandard`` package (``pip install 'straggler[replay]'``). Spark's lz4, lzf and snappy
codecs write their libraries' own stream framings, which no maintained Python package reads:
such a log is refused with a message saying how to write one that can be read.

From Spark's events only these are used (the field names of Spark's ``JsonProtocol``):
``SparkListenerTaskStart`` and ``SparkListenerTaskEnd`` (``Task Info``: ``Task ID``, ``Index``,
``Attempt``, ``Launch Time``, ``Finish Time``, ``Executor ID``, ``Host``, ``Speculative``;
``Task End Reason``), ``SparkListenerExecutorAdded`` (``Total Cores``),
``SparkListenerResourceProfileAdded`` and ``SparkListenerEnvironmentUpdate`` (the CPUs a task
takes; the Spark properties, for the speculation settings the job ran with),
``SparkListenerApplicationStart`` (the application's id). Every other event is skipped.

Imperfect logs, as Spark's history server reads them: a last line cut off part way (an
application that crashed or still runs; a compressed stream that ends early) ends the log
where it is complete, with a warning; any other line that is not JSON is an error naming the
file and the line. A rolling directory whose file indices skip one (a lost file) is refused, as
Spark refuses it; a path that is no regular file (a FIFO, a device) is refused before a byte is
read; unknown event kinds are skipped, in Spark's logs and in straggler's.
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from straggler._export import SCHEMA, _check_header, _event
from straggler._records import EVENT_KINDS

__all__ = ["Attempt", "JobLog", "read_log"]

# Spark's codec short names and the extensions it gives compressed logs (CompressionCodec).
_ZSTD_EXTENSIONS = (".zstd", ".zst")
_UNREADABLE_CODECS = {".lz4": "lz4", ".lzf": "lzf", ".snappy": "snappy"}
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_IN_PROGRESS = ".inprogress"
_ROLLING_FILE = re.compile(r"^events_(\d+)_")

# How a Spark task attempt ended, from its TaskEndReason's "Reason" (JsonProtocol):
# TaskKilled: stopped (e.g. "another attempt succeeded"); TaskCommitDenied: its output lost
# the commit race to another attempt, which Spark does not count as a failure;
# ExecutorLostFailure: its executor went away. Every other reason is a failure.
_SPARK_OUTCOMES = {"Success": "finish", "TaskKilled": "kill", "TaskCommitDenied": "kill",
                   "ExecutorLostFailure": "lost"}


@dataclass(frozen=True)
class Attempt:
    """One task attempt of a log. Times in seconds on the log's clock; ``end`` None and
    ``outcome`` None for an attempt still running when the log ends. ``outcome``: "finish"
    (succeeded), "fail", "kill" or "lost"."""

    stage: str
    task: int
    attempt: int
    executor: str
    host: Optional[str]
    start: float
    end: Optional[float]
    outcome: Optional[str]
    speculative: bool


@dataclass
class JobLog:
    """What ``read_log`` found: the attempts in the order they started, the executors' cores
    where the log says them, the CPUs a task takes, and warnings about the log's state."""

    path: str
    kind: str  # "spark" or "straggler"
    attempts: list[Attempt]
    cores: dict[str, int] = field(default_factory=dict)
    task_cpus: int = 1
    application: Optional[str] = None
    warnings: list[str] = field(default_factory=list)
    conf: dict[str, str] = field(default_factory=dict)  # Spark's properties, where the log has them


def read_log(path: Any) -> JobLog:
    """Read a Spark event log (file or rolling directory) or a straggler log; see the module's
    docstring. ``ValueError`` (naming the file) for what is no event log or holds no task,
    ``ImportError`` for a zstd log without a zstd package, ``OSError`` for a path that cannot
    be read."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"log must be a path (str or os.PathLike), got {path!r}")
    target = os.fspath(path)
    if isinstance(target, bytes):
        target = os.fsdecode(target)
    if not os.path.exists(target):
        raise FileNotFoundError(f"log: no such file or directory: {target!r}")
    if os.path.isdir(target):
        files = _rolling_files(target)
    else:
        files = [target]
    reader = _LineReader(target)
    for number, file in enumerate(files):
        reader.add(file, _decoded(file), last=number == len(files) - 1)
    log = reader.parse()
    if not any(a.outcome == "finish" for a in log.attempts):
        what = "no task attempt" if not log.attempts else "no task attempt that succeeded"
        raise ValueError(f"{target}: {what} in this {_KIND_NAMES[log.kind]}; nothing to replay")
    done = {(a.stage, a.task) for a in log.attempts if a.outcome == "finish"}
    undone = {(a.stage, a.task) for a in log.attempts} - done
    if undone and reader.cut is None:
        log.warnings.append(f"{target}: {len(undone)} tasks never succeeded in the log (they failed for good, or "
                            f"still ran when it ended); the replay leaves them out")
    return log


_KIND_NAMES = {"spark": "Spark event log", "straggler": f"{SCHEMA} log"}


def _rolling_files(directory: str) -> list[str]:
    """The event files of a rolling event log directory, in Spark's order (by index)."""
    found = []
    for name in os.listdir(directory):
        match = _ROLLING_FILE.match(name)
        if match and os.path.isfile(os.path.join(directory, name)):
            found.append((int(match.group(1)), name))
    if not found:
        raise ValueError(f"{directory}: a directory with no events_<n>_<app> files; not a Spark rolling event "
                         f"log (eventlog_v2_<app>)")
    found.sort()
    indices = [index for index, _ in found]
    twice = sorted({index for index in indices if indices.count(index) > 1})
    if twice:
        names = ", ".join(name for index, name in found if index == twice[0])
        raise ValueError(f"{directory}: more than one events file of index {twice[0]} ({names}); not one "
                         f"Spark rolling event log")
    if indices != list(range(indices[0], indices[0] + len(indices))):
        # As Spark's RollingEventLogFilesFileReader: "Found missing event log file".
        missing = sorted(set(range(indices[0], indices[-1] + 1)) - set(indices))
        names = ", ".join(f"events_{n}_*" for n in missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise ValueError(f"{directory}: missing event log files ({names}) between events_{indices[0]}_* and "
                         f"events_{indices[-1]}_*; their events are lost")
    return [os.path.join(directory, name) for _, name in found]


def _decoded(file: str) -> tuple[bytes, Optional[str]]:
    """The file's bytes, decompressed; and a warning when a compressed stream ends early."""
    # Only a regular file: a FIFO would wait for a writer and a device such as /dev/zero never
    # ends (opened without blocking, and checked before a byte is read).
    fd = os.open(file, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    with open(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ValueError(f"{file}: not a regular file; an event log is a file or a rolling eventlog_v2_* directory")
        data = f.read()
    name = file[: -len(_IN_PROGRESS)] if file.endswith(_IN_PROGRESS) else file
    extension = os.path.splitext(name)[1].lower()
    if extension in _UNREADABLE_CODECS:
        codec = _UNREADABLE_CODECS[extension]
        raise ValueError(f"{file}: compressed with Spark's {codec} codec, which straggler cannot read; "
                         f"write the log with spark.eventLog.compression.codec=zstd (Spark 4's default)")
    if extension in _ZSTD_EXTENSIONS or data.startswith(_ZSTD_MAGIC):
        return _unzstd(data, file)
    return data, None


def _zstd_factory(file: str) -> tuple[Callable[[], Any], type[Exception]]:
    try:
        from compression import zstd  # type: ignore[import-not-found,unused-ignore]  # CPython 3.14+

        return zstd.ZstdDecompressor, zstd.ZstdError
    except ImportError:
        pass
    try:
        import zstandard
    except ImportError:
        raise ImportError(f"{file}: the log is compressed with zstd; reading it needs the zstandard package: "
                          f"pip install 'straggler[replay]'") from None
    return (lambda: zstandard.ZstdDecompressor().decompressobj()), zstandard.ZstdError


def _unzstd(data: bytes, file: str) -> tuple[bytes, Optional[str]]:
    """Decompress every zstd frame of ``data``; a stream that ends part way through a frame (or
    holds garbage after the frames) gives what came before, with a warning."""
    factory, error = _zstd_factory(file)
    out = []
    rest = data
    while rest:
        decompressor = factory()
        try:
            out.append(decompressor.decompress(rest))
        except error as exc:
            if not out:
                raise ValueError(f"{file}: not a zstd stream ({exc})") from None
            return b"".join(out), f"{file}: the zstd stream is damaged after {sum(map(len, out))} bytes"
        if not decompressor.eof:
            return b"".join(out), f"{file}: the zstd stream ends part way through a frame"
        rest = decompressor.unused_data
    return b"".join(out), None


class _LineReader:
    """Lines of one or more files, parsed as one log; only the last file may end cut off."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.lines: list[tuple[str, int, bytes]] = []  # (file, line number, text)
        self.cut: Optional[str] = None

    def add(self, file: str, decoded: tuple[bytes, Optional[str]], last: bool) -> None:
        data, warning = decoded
        if warning is not None:
            if not last:
                raise ValueError(f"{warning}; only the log's last file may end cut off")
            self.cut = warning
        pieces = data.split(b"\n")
        for number, text in enumerate(pieces, 1):
            if text.strip():
                self.lines.append((file, number, text))

    def parse(self) -> JobLog:
        if not self.lines:
            if self.cut is not None:
                raise ValueError(f"{self.cut}, before its first line; nothing to replay")
            raise ValueError(f"{self.target}: empty; not an event log")
        objects: list[tuple[str, dict]] = []
        for i, (file, number, text) in enumerate(self.lines):
            where = f"{file}:{number}"
            try:
                obj = json.loads(text.decode("utf-8"))
            except (UnicodeDecodeError, ValueError, RecursionError) as exc:
                if i == 0:
                    raise ValueError(f"{where}: not an event log (the first line is not JSON: {exc})") from None
                if i == len(self.lines) - 1:
                    # The last line cut off: what Spark's history server reads as an application
                    # that is still running or died while writing.
                    if self.cut is None:  # else a compressed stream that ended early says why
                        self.cut = f"{where}: the log ends part way through a line"
                    break
                raise ValueError(f"{where}: not JSON ({exc})") from None
            if not isinstance(obj, dict):
                if i == 0:
                    raise ValueError(f"{where}: not an event log (the first line is no JSON object)")
                raise ValueError(f"{where}: expected a JSON object, got {type(obj).__name__}")
            objects.append((where, obj))
        first = objects[0][1]
        if "schema" in first:
            _check_header(first, objects[0][0])
            log = _straggler_log(self.target, objects[1:])
        elif isinstance(first.get("Event"), str):
            log = _spark_log(self.target, objects)
        else:
            raise ValueError(f"{objects[0][0]}: not an event log: neither Spark's (a JSON object with \"Event\") nor "
                             f"a {SCHEMA} log (its header)")
        _settle_stopped(log.attempts)
        if self.cut is not None:
            running = sum(a.end is None for a in log.attempts)
            log.warnings.insert(0, f"{self.cut}; replaying the log as far as it is complete"
                                   + (f" ({running} attempts still running there are left out)" if running else ""))
        return log


def _settle_stopped(attempts: list[Attempt]) -> None:
    """An attempt with no end whose task another attempt completed was stopped by that win:
    it ends then, killed. (Spark does not log the end of an attempt it stops when the stage's
    last task completes just before the application ends: the fixture logs show it.) Attempts
    of tasks that no attempt completed stay open: the log ends while they run."""
    completed: dict[tuple[str, int], float] = {}
    for a in attempts:
        if a.outcome == "finish" and a.end is not None:
            key = (a.stage, a.task)
            completed[key] = min(completed.get(key, math.inf), a.end)
    for i, a in enumerate(attempts):
        if a.end is None and (a.stage, a.task) in completed:
            attempts[i] = Attempt(a.stage, a.task, a.attempt, a.executor, a.host, a.start,
                                  max(a.start, completed[a.stage, a.task]), "kill", a.speculative)


# --- straggler's own log ------------------------------------------------------------------------


def _straggler_log(target: str, objects: list[tuple[str, dict]]) -> JobLog:
    started: dict[tuple[int, int], Any] = {}
    attempts: list[Optional[Attempt]] = []
    index: dict[tuple[int, int], int] = {}
    for where, obj in objects:
        if isinstance(obj.get("kind"), str) and obj["kind"] not in EVENT_KINDS:
            continue  # a kind this straggler does not know: skipped, as Spark's unknown events are
        event = _event(obj, where)
        key = (event.task, event.attempt)
        if event.kind == "start":
            started[key] = event
            index[key] = len(attempts)
            attempts.append(Attempt(event.stage, event.task, event.attempt, str(event.node), None, event.time,
                                    None, None, event.speculative))
            continue
        begun = started.pop(key, None)
        if begun is None:
            raise ValueError(f"{where}: {event.kind!r} of task {event.task} attempt {event.attempt} without a start")
        attempts[index[key]] = Attempt(begun.stage, begun.task, begun.attempt, str(begun.node), None, begun.time,
                                       max(event.time, begun.time), event.kind, begun.speculative)
    return JobLog(target, "straggler", [a for a in attempts if a is not None])


# --- Spark's event log --------------------------------------------------------------------------


def _field(obj: dict, name: str, kind: Any, where: str) -> Any:
    value = obj.get(name)
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise ValueError(f"{where}: expected {name!r} as {getattr(kind, '__name__', kind)}, got {value!r}")
    return value


# Spark's times are milliseconds since the epoch; a time past this (in seconds) is no clock's.
_MAX_TIME = 1e100


def _time(info: dict, name: str, where: str) -> float:
    """A time of Spark's in seconds (an integer of milliseconds in the log)."""
    value = _field(info, name, int, where)
    if abs(value) > _MAX_TIME * 1000:  # also no float can hold it (10**400)
        raise ValueError(f"{where}: expected {name!r} in milliseconds, at most {_MAX_TIME * 1000:g}, got {value!r}")
    return value / 1000.0


def _stage_name(obj: dict, where: str) -> str:
    stage = _field(obj, "Stage ID", int, where)
    attempt = obj.get("Stage Attempt ID", 0)
    # A stage's retry (after a fetch failure) is a task set of its own, as in Spark's scheduler.
    return str(stage) if not attempt else f"{stage}.{attempt}"


def _spark_log(target: str, objects: list[tuple[str, dict]]) -> JobLog:
    log = JobLog(target, "spark", [])
    by_id: dict[int, int] = {}  # Spark's task id -> index in log.attempts
    profile_cpus: dict[int, int] = {}
    conf_cpus: Optional[int] = None
    for where, obj in objects:
        kind = obj.get("Event")
        if kind == "SparkListenerTaskStart":
            info = _field(obj, "Task Info", dict, where)
            task_id = _field(info, "Task ID", int, where)
            by_id[task_id] = len(log.attempts)
            log.attempts.append(Attempt(
                _stage_name(obj, where), _field(info, "Index", int, where), _field(info, "Attempt", int, where),
                str(_field(info, "Executor ID", str, where)), info.get("Host"),
                _time(info, "Launch Time", where), None, None, bool(info.get("Speculative", False)),
            ))
        elif kind == "SparkListenerTaskEnd":
            info = _field(obj, "Task Info", dict, where)
            task_id = _field(info, "Task ID", int, where)
            at = by_id.get(task_id)
            if at is None or log.attempts[at].end is not None:
                # A resubmitted task's extra end (its map output was lost), or an end whose
                # start is not in the log: no attempt to end.
                continue
            finish = _time(info, "Finish Time", where)
            reason = obj.get("Task End Reason")
            reason = reason.get("Reason") if isinstance(reason, dict) else None
            outcome = _SPARK_OUTCOMES.get(reason, "fail") if isinstance(reason, str) else (
                "fail" if info.get("Failed") else "kill" if info.get("Killed") else "finish")
            begun = log.attempts[at]
            log.attempts[at] = Attempt(begun.stage, begun.task, begun.attempt, begun.executor, begun.host,
                                       begun.start, max(finish, begun.start), outcome, begun.speculative)
        elif kind == "SparkListenerExecutorAdded":
            info = obj.get("Executor Info")
            executor = obj.get("Executor ID")
            if isinstance(info, dict) and isinstance(executor, str) and isinstance(info.get("Total Cores"), int):
                log.cores[executor] = info["Total Cores"]
        elif kind == "SparkListenerResourceProfileAdded":
            requests = obj.get("Task Resource Requests")
            cpus = requests.get("cpus") if isinstance(requests, dict) else None
            amount = cpus.get("Amount") if isinstance(cpus, dict) else None
            if isinstance(obj.get("Resource Profile Id"), int) and isinstance(amount, (int, float)) and amount >= 1:
                profile_cpus[obj["Resource Profile Id"]] = int(amount)
        elif kind == "SparkListenerEnvironmentUpdate":
            properties = obj.get("Spark Properties")
            if isinstance(properties, dict):
                log.conf.update({k: v for k, v in properties.items() if isinstance(k, str) and isinstance(v, str)})
            value = properties.get("spark.task.cpus") if isinstance(properties, dict) else None
            if isinstance(value, str) and value.strip().isdigit() and int(value) >= 1:
                conf_cpus = int(value)
        elif kind == "SparkListenerApplicationStart":
            app = obj.get("App ID")
            if isinstance(app, str):
                log.application = app
    # The default resource profile (id 0) states the CPUs per task; else spark.task.cpus.
    log.task_cpus = profile_cpus.get(0, conf_cpus or 1)
    return log
