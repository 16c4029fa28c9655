"""Argument checks shared by every public entry point (policies, executor, task options,
simulation, command line), so that one kind of value is accepted, refused and reported the
same way everywhere.

Each check takes the argument's name and its value, and returns the value normalised (a
Python ``int``, ``float`` or ``bool``) or raises ``TypeError`` (wrong kind) / ``ValueError``
(right kind, outside its range) with a message that names the argument and shows the value.
numpy scalars are accepted like the Python numbers they stand for; ``bool`` (and
``numpy.bool_``) is never a number here, although Python counts it as one.
"""

from __future__ import annotations

import math
import numbers
import operator
from typing import Callable, Optional

__all__ = [
    "is_bool", "real", "integer", "flag", "duration", "optional_duration",
    "text_integer", "text_real",
]


def is_bool(value: object) -> bool:
    """True for ``bool`` and ``numpy.bool_`` (which is no ``numbers.Integral``, but is no count either)."""
    return isinstance(value, bool) or type(value).__name__ in ("bool_", "bool")


def _interval(low: float, high: float, low_open: bool, high_open: bool) -> str:
    return f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"


def real(name: str, value: object, *, low: float = -math.inf, high: float = math.inf,
         low_open: bool = False, high_open: bool = False, allow_inf: bool = False) -> float:
    """``value`` as a float between ``low`` and ``high`` (open ends as told); NaN is refused,
    infinity too unless ``allow_inf``."""
    if is_bool(value) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {value!r}")
    try:
        number = float(value)
    except OverflowError:  # an int too large for a float
        raise ValueError(f"{name} must be a finite number, got {value!r}") from None
    if math.isnan(number) or (math.isinf(number) and not allow_inf):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    too_low = number <= low if low_open else number < low
    too_high = number >= high if high_open else number > high
    if too_low or too_high:
        raise ValueError(f"{name} must be in {_interval(low, high, low_open, high_open)}, got {value!r}")
    return number


def integer(name: str, value: object, *, low: Optional[int] = None, high: Optional[int] = None) -> int:
    """``value`` as an int in [low, high]: a Python or numpy integer (anything with
    ``__index__``), never a bool or a float, even a whole one."""
    if is_bool(value) or isinstance(value, float):
        raise TypeError(f"{name} must be an int, got {value!r}")
    try:
        number = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"{name} must be an int, got {value!r}") from None
    if low is not None and number < low:
        raise ValueError(f"{name} must be >= {low}, got {value!r}")
    if high is not None and number > high:
        raise ValueError(f"{name} must be <= {high}, got {value!r}")
    return number


def flag(name: str, value: object) -> bool:
    """``value`` as a bool: only ``True`` / ``False`` (or numpy's), never 0, 1 or None."""
    if not is_bool(value):
        raise TypeError(f"{name} must be a bool, got {value!r}")
    return bool(value)


def duration(name: str, value: object, *, allow_zero: bool = False) -> float:
    """A finite number of seconds, > 0 (or >= 0 with ``allow_zero``)."""
    return real(name, value, low=0.0, low_open=not allow_zero)


def optional_duration(name: str, value: object, *, allow_zero: bool = False) -> Optional[float]:
    """``duration``, or None."""
    return None if value is None else duration(name, value, allow_zero=allow_zero)


# --- the command line: text in, the same checks ------------------------------------------------

def _cli_message(error: Exception) -> str:
    # "value must be >= 1, got 0" -> "expected a number >= 1, got 0"
    text = str(error)
    for old, new in (("value must be a ", "expected a "), ("value must be ", "expected a number ")):
        if text.startswith(old):
            return new + text[len(old):]
    return text


def text_integer(low: Optional[int] = None, high: Optional[int] = None) -> Callable[[str], int]:
    """An argparse ``type=``: a whole number written in decimal ("12", not "1e3" or "1.0"),
    checked like ``integer``; a refusal is argparse's one-line error (exit code 2)."""
    import argparse

    def parse(text: str) -> int:
        try:
            value = int(text.strip(), 10)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        try:
            return integer("value", value, low=low, high=high)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(_cli_message(exc)) from None

    parse.__name__ = "whole number"
    return parse


def text_real(low: float = -math.inf, high: float = math.inf, *, low_open: bool = False,
              high_open: bool = False) -> Callable[[str], float]:
    """An argparse ``type=``: a finite decimal number, checked like ``real``."""
    import argparse

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        try:
            return real("value", value, low=low, high=high, low_open=low_open, high_open=high_open)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(_cli_message(exc)) from None

    parse.__name__ = "number"
    return parse
