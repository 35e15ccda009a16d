"""``WildCase``: one framework setting measured, as the in-the-wild table and figure show it."""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass, field

__all__ = ["WildCase", "installed_case", "signed_error"]


def signed_error(value: float | None, exact: float) -> float | None:
    """``value / exact - 1``, signed (``plots.relative_error`` is its size); None for nothing shown; inf or NaN pass
    through (an overflowed state)."""
    if value is None:
        return None
    if not math.isfinite(value):
        return value
    return value / exact - 1.0


@dataclass(frozen=True)
class WildCase:
    """What one framework displayed and saved for an epoch metric, beside the exact value.

    ``displayed`` is what a user sees (console line, progress bar); ``saved`` what the framework
    keeps (``History``, ``metrics.csv``, ``compute()``, ``trainer_state.json``); either is None
    where the framework has no such thing. ``upstream`` names the issue or pull request
    (``"Lightning-AI/pytorch-lightning#21859"``), empty where there is none. ``files`` are the
    files the case wrote (for the doctor); ``note`` says in a few words what happened;
    ``console`` is the line the framework printed, as printed, where it printed one.
    """

    framework: str
    version: str
    case: str
    displayed: float | None
    saved: float | None
    exact: float
    upstream: str = ""
    note: str = ""
    files: tuple[str, ...] = field(default=())
    console: str = ""

    @property
    def saved_error(self) -> float | None:
        return signed_error(self.saved, self.exact)

    @property
    def displayed_error(self) -> float | None:
        return signed_error(self.displayed, self.exact)

    @property
    def is_exact(self) -> bool:
        """Saved within 1e-6 of the exact value, and displayed (where shown) within 5e-3: consoles round.

        A progress bar with three significant digits shows 1.48 for 1.48255 (1.7e-3 off).
        """
        limits = [(e, limit) for e, limit in ((self.saved_error, 1e-6), (self.displayed_error, 5e-3)) if e is not None]
        return bool(limits) and all(math.isfinite(e) and abs(e) <= limit for e, limit in limits)


def installed_case(framework: str, module: str, case: str, displayed: float | None, saved: float | None,
                   exact: float, **extra) -> WildCase:
    """A ``WildCase`` measured with the installed ``module`` (its ``__version__`` is the case's version)."""
    return WildCase(framework, importlib.import_module(module).__version__, case, displayed, saved, exact, **extra)
