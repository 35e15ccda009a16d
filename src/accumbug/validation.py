"""Checks of the values a user passes in: one function per kind, one message style.

Every public entry point that takes a number or a named choice checks it here, as
scikit-learn's parameter validation does, so each kind of value is refused the same way and
in the same words: ``name=value: problem; allowed: ...``, such as
``epochs=0: must be a whole number >= 1``. NumPy scalars are numbers like any other
(``numbers.Integral``, ``numbers.Real``) and come back as plain Python ones, so what a run
stores (``config.json``) is the same whichever kind was passed. A bool is refused where a
number is asked for: ``True`` is an ``int`` to Python, never a count to a user.

Imports nothing of the package, so any core module may use it.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable

__all__ = ["check_choice", "check_flag", "check_real", "check_whole", "is_real"]


def is_real(value) -> bool:
    """Whether ``value`` is a real number (``numbers.Real``, NumPy scalars included) and not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _number(value, kind: type) -> int | float | None:
    """``value`` as a Python ``int`` or ``float`` when it is a ``kind`` and not a bool; else None."""
    if isinstance(value, bool) or not isinstance(value, kind):
        return None
    return int(value) if isinstance(value, numbers.Integral) else float(value)


def check_whole(name: str, value, minimum: int | None = None, maximum: int | None = None, *,
                maximum_name: str | None = None, unit: str = "") -> int:
    """``value`` as a Python ``int``, or a ``ValueError`` naming it.

    Accepts any ``numbers.Integral`` but a bool (NumPy integers included); ``minimum`` and
    ``maximum`` are inclusive. ``maximum_name`` names the maximum in the message
    (``from 1 to samples=10``); ``unit`` follows "whole number" (``of ranks``).
    """
    wanted = "a whole number" + (f" {unit}" if unit else "")
    if minimum is not None and maximum is not None:
        top = f"{maximum_name}={maximum}" if maximum_name else f"{maximum}"
        wanted += f" from {minimum} to {top}"
    elif minimum is not None:
        wanted += f" >= {minimum}"
    elif maximum is not None:
        wanted += f" <= {maximum}"
    number = _number(value, numbers.Integral)
    if number is None:
        raise ValueError(f"{name}={value!r}: must be {wanted}")
    if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
        raise ValueError(f"{name}={number!r}: must be {wanted}")
    return number


def _wanted_real(low, high, low_open: bool, high_open: bool, finite: bool) -> str:
    """The words of a real check: ``a finite number > 0``, ``in [0, 1)``."""
    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    wanted = "a finite number" if finite else "a number"
    if low is not None:
        return f"{wanted} {'>' if low_open else '>='} {low}"
    if high is not None:
        return f"{wanted} {'<' if high_open else '<='} {high}"
    return wanted


def check_real(name: str, value, low: float | None = None, high: float | None = None, *,
               low_open: bool = False, high_open: bool = False, finite: bool = True) -> float | int:
    """``value`` as a Python ``float`` (an integer as a Python ``int``), or a ``ValueError`` naming it.

    Accepts any ``numbers.Real`` but a bool (NumPy scalars included); an integer stays an
    integer, so ``lr=1`` is recorded as it was given. ``low`` and
    ``high`` bound it, each closed unless ``low_open``/``high_open``; NaN is always refused
    and so are infinities when ``finite`` (the default).
    """
    wanted = _wanted_real(low, high, low_open, high_open, finite)
    number = _number(value, numbers.Real)
    if number is None:
        raise ValueError(f"{name}={value!r}: must be {wanted}")
    refused = math.isnan(number) or (finite and math.isinf(number))
    if low is not None:
        refused = refused or number < low or (low_open and number == low)
    if high is not None:
        refused = refused or number > high or (high_open and number == high)
    if refused:
        raise ValueError(f"{name}={number!r}: must be {wanted}")
    return number


def check_flag(name: str, value) -> bool:
    """``value`` as a Python ``bool`` (NumPy's ``bool_`` included), or a ``ValueError`` naming it.

    ``1`` or ``"yes"`` is refused: a setting that switches behaviour on takes True or False only.
    """
    if type(value).__name__ not in ("bool", "bool_"):
        raise ValueError(f"{name}={value!r}: must be True or False")
    return bool(value)


def check_choice(name: str, value, allowed: Iterable):
    """``value`` when it is one of ``allowed`` (a registry: its keys, or its items), else a ``ValueError``.

    The message lists ``allowed`` as it is passed, so the list is never typed twice.
    """
    allowed = list(allowed)
    try:
        known = value in allowed
    except (TypeError, ValueError):  # an array, whose comparison has no single truth value
        known = False
    if not known:
        raise ValueError(f"{name}={value!r}: unknown; allowed: {', '.join(str(a) for a in allowed)}")
    return value
