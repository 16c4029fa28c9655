"""Durations as the peer systems write them, read into seconds.

Spark writes "100ms", "30s", "5min", "2h" (``JavaUtils.timeStringAs``); Flink writes the same
and also "1 min", "60 s", "500 ms", "2 hours" (``TimeUtils.parseDuration``). Both read a bare
number in the unit of the key (milliseconds for every key we read from Spark and Flink).
One parser reads the union of both spellings; a decimal number is accepted too ("1.5s"),
which neither peer allows but which loses nothing.
"""

from __future__ import annotations

import math
import re

__all__ = ["parse_duration", "UNIT_SECONDS"]

# Every unit spelling of Spark and Flink, lower case, in seconds.
UNIT_SECONDS: dict[str, float] = {}
for _names, _seconds in (
    (("ns", "nano", "nanos", "nanosecond", "nanoseconds"), 1e-9),
    (("us", "\u00b5s", "micro", "micros", "microsecond", "microseconds"), 1e-6),
    (("ms", "milli", "millis", "millisecond", "milliseconds"), 1e-3),
    (("s", "sec", "secs", "second", "seconds"), 1.0),
    (("m", "min", "mins", "minute", "minutes"), 60.0),
    (("h", "hour", "hours"), 3600.0),
    (("d", "day", "days"), 86400.0),
):
    for _name in _names:
        UNIT_SECONDS[_name] = _seconds

_DURATION = re.compile(
    r"^\s*([+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)\s*([a-zA-Z\u00b5]*)\s*$"
)


def parse_duration(value: object, *, default_unit: str, key: str) -> float:
    """Read ``value`` (a time string or a number) as seconds.

    A number, or a string without a unit, is in ``default_unit`` (a key of ``UNIT_SECONDS``).
    Anything unreadable, including NaN, infinity and booleans, is a ``ValueError`` that names
    ``key`` and shows the value. The sign is kept: range checks belong to the policy.
    """
    if default_unit not in UNIT_SECONDS:
        raise ValueError(f"default_unit must be one of {sorted(UNIT_SECONDS)}, got {default_unit!r}")
    if isinstance(value, bool):
        raise ValueError(f"{key}: expected a duration, got {value!r}")
    if isinstance(value, (int, float)):
        number = float(value)
        unit = default_unit
    elif isinstance(value, str):
        match = _DURATION.match(value)
        if match is None:
            raise ValueError(f"{key}: cannot read {value!r} as a duration")
        number = float(match.group(1))
        unit = match.group(2).lower() or default_unit
        if unit not in UNIT_SECONDS:
            raise ValueError(f"{key}: unknown time unit {match.group(2)!r} in {value!r}")
    else:
        raise ValueError(f"{key}: expected a duration, got {value!r}")
    seconds = number * UNIT_SECONDS[unit]
    if not math.isfinite(seconds):
        raise ValueError(f"{key}: duration must be finite, got {value!r}")
    return seconds
