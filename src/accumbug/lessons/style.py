"""The figures' one visual language: a colour per tracker role, a style per kind of value.

Every figure of the notebooks and the docs draws with these names, so a colour and a marker
mean the same thing everywhere:

* **Colour = which code** (``ROLE_COLOURS``, Okabe-Ito, colour-blind safe): the exact loss is
  black; the incident's "broken" tracker vermillion; the write-up's "fixed" tracker blue; the
  fix that works bluish green; a mechanism-gallery case reddish purple; the naive cross-rank
  trackers of ``05_distributed.ipynb`` orange, sky blue and yellow. ``role_colour`` maps a
  tracker name (``kind:accumulator``) or a code path (``symptom.CODE_PATHS``) to its colour.
* **Marker and line = which kind of value** (``VALUE_STYLES``): the console (what was
  printed) a large hollow circle on a solid line; the saved file (what a reader gets back) a
  small filled circle on a dashed line, so a file equal to the console sits inside its
  circle; the exact loss a thick translucent line without markers.
* **Line style = which accumulator** (``ACCUMULATOR_STYLES``) where a figure draws sums
  (``plot_trajectory``): half precision dashed or dotted, drawn above the solid wide sums.

``drawn_value`` holds the rule for printed values: a value printed to ``d`` decimals stands
for anything within half a unit of its last digit, so a figure draws it at the value it
rounds (the exact loss, or the file's value) instead of as an error of its own. Taught
implicitly by every figure; the legends say it in words (``ROUNDING_NOTE``).
"""

from __future__ import annotations

__all__ = ["ACCUMULATOR_STYLES", "OKABE_ITO", "ROLE_COLOURS", "ROLE_WORDS", "ROUNDING_NOTE", "VALUE_STYLES",
           "VALUE_WORDS", "drawn_value", "role_colour"]

OKABE_ITO = {
    "black": "#000000", "orange": "#E69F00", "sky": "#56B4E9", "green": "#009E73",
    "yellow": "#F0E442", "blue": "#0072B2", "vermillion": "#D55E00", "purple": "#CC79A7",
}
# one colour per tracker role; a tracker or code path not listed is a gallery case
ROLE_COLOURS = {
    "exact": OKABE_ITO["black"],
    "incident-broken": OKABE_ITO["vermillion"],
    "incident-fixed": OKABE_ITO["blue"],
    "working-fix": OKABE_ITO["green"],
    "gallery-case": OKABE_ITO["purple"],
    "naive-rank0": OKABE_ITO["orange"],
    "naive-rank-mean": OKABE_ITO["sky"],
    "naive-padded": OKABE_ITO["yellow"],
}
ROLE_WORDS = {"exact": "exact loss", "incident-broken": "the incident's \"broken\" tracker",
              "incident-fixed": "the write-up's \"fixed\" tracker", "working-fix": "the fix that works",
              "gallery-case": "a gallery case", "naive-rank0": "rank 0's loss only",
              "naive-rank-mean": "the mean of rank means", "naive-padded": "padded samples counted"}
# code paths and gallery trackers by the role they play
_ROLE_OF = {"incident's code": "incident-broken", "write-up's fix": "incident-fixed", "working fix": "working-fix",
            "in-place-mean": "incident-broken", "tensor-loss": "incident-broken",
            "in-place-mean-fixed": "incident-fixed", "tensor-loss-fixed": "incident-fixed"}

# one marker and line per kind of value; ``zorder`` keeps the console's circle around the file's dot
VALUE_STYLES = {
    "exact": {"color": OKABE_ITO["black"], "linewidth": 3, "alpha": 0.35, "zorder": 1},
    "console": {"marker": "o", "markersize": 10, "markerfacecolor": "none", "markeredgewidth": 1.6,
                "linestyle": "-", "linewidth": 1.4, "zorder": 3},
    "file": {"marker": "o", "markersize": 4.5, "linestyle": "--", "linewidth": 1.4, "zorder": 4},
}
VALUE_WORDS = {"exact": "exact loss", "console": "console (printed)", "file": "saved file (read back)"}
ROUNDING_NOTE = "a printed value within half a unit of its last digit is drawn at the value it rounds"

# the accumulator a sum is kept in: wide sums solid, half precision dashed or dotted (drawn on top)
ACCUMULATOR_STYLES = {"python": "-", "float64": "-", "float32": "-.", "bfloat16": ":", "float16": "--", "auto": "-."}


def role_colour(name: str) -> str:
    """The colour of a tracker (``kind`` or ``kind:accumulator``), a code path or a role; a gallery case's otherwise."""
    kind = name.partition(":")[0]
    return ROLE_COLOURS.get(kind) or ROLE_COLOURS[_ROLE_OF.get(kind, "gallery-case")]


def drawn_value(printed: float, decimals: int, *candidates: float) -> float:
    """Where to draw a value printed to ``decimals`` decimals: at the first of ``candidates`` it rounds, else itself.

    ``9.1621`` printed for an exact ``9.16213`` is not an error of ``-0.00003``: a printed value
    stands for anything within half a unit of its last digit, so it is drawn at the value it
    stands for (the exact loss, or the file's value when the console printed that).
    """
    half_unit = 0.5 * 10.0 ** -decimals
    for candidate in candidates:
        if abs(printed - candidate) <= half_unit * (1 + 1e-9):
            return candidate
    return printed
