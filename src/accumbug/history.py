"""History files: strict, lossless and atomic.

A history is the record of hours of compute. The incident lost one: its file held
``[0.0, 0.0, ...]`` where the console had shown real losses. This module makes that
impossible for the files the package writes:

* **strict**: plain JSON that any parser accepts (``allow_nan=False``; no ``NaN`` or
  ``Infinity`` tokens, which Python's ``json`` would otherwise write and most parsers reject);
* **lossless**: a non-finite number is written as ``null`` and listed under ``"nonfinite"``
  with its original value (``"nan"``, ``"inf"``, ``"-inf"``) by JSON Pointer, so
  ``load_history`` gives back NaN, +inf or -inf exactly;
* **atomic**: the text goes to a temporary file in the same folder, is flushed to disk and
  then ``os.replace``-d over the old file, so a crash leaves the old file or the new one,
  never half of one.

``read_back`` and ``strict_parse_ok`` read any history text, also one that other writers made
(``specimens/serialisers.py`` holds the lossy ones the notebooks compare).
"""

from __future__ import annotations

import json
import math
import os
import uuid
from pathlib import Path

__all__ = [
    "HISTORY_FORMAT",
    "HistoryFileError",
    "atomic_write_bytes",
    "atomic_write_text",
    "decode_nonfinite",
    "dumps_history",
    "encode_nonfinite",
    "load_history",
    "loads_history",
    "loads_strict",
    "map_leaves",
    "read_back",
    "save_history",
    "strict_parse_ok",
]

HISTORY_FORMAT = "accumbug-history/1"
_NONFINITE_NAMES = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


class HistoryFileError(ValueError):
    """A history file that is not strict JSON, or not one this package wrote."""


def _nonfinite_name(value: float) -> str:
    return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")


def _pointer_token(key) -> str:
    return str(key).replace("~", "~0").replace("/", "~1")


def encode_nonfinite(obj, pointer: str = "", found: dict | None = None):
    """Return ``(copy of obj with non-finite floats as None, {json_pointer: "nan"|"inf"|"-inf"})``."""
    found = {} if found is None else found
    if isinstance(obj, float) and not math.isfinite(obj):
        found[pointer] = _nonfinite_name(obj)
        return None, found
    if isinstance(obj, dict):
        return {k: encode_nonfinite(v, f"{pointer}/{_pointer_token(k)}", found)[0] for k, v in obj.items()}, found
    if isinstance(obj, (list, tuple)):
        return [encode_nonfinite(v, f"{pointer}/{i}", found)[0] for i, v in enumerate(obj)], found
    return obj, found


def decode_nonfinite(obj, nonfinite: dict):
    """Put the listed non-finite values back in place of their ``null`` (in place; returns obj)."""
    for pointer, name in nonfinite.items():
        if name not in _NONFINITE_NAMES:
            raise HistoryFileError(f"nonfinite[{pointer!r}]={name!r}: expected one of nan, inf, -inf")
        tokens = [t.replace("~1", "/").replace("~0", "~") for t in pointer.split("/")[1:]]
        if not tokens:
            raise HistoryFileError(f"nonfinite pointer {pointer!r}: must name a value inside the file")
        parent = obj
        try:
            for token in tokens[:-1]:
                parent = parent[int(token) if isinstance(parent, list) else token]
            last = int(tokens[-1]) if isinstance(parent, list) else tokens[-1]
            current = parent[last]
        except (KeyError, IndexError, ValueError, TypeError):
            raise HistoryFileError(f"nonfinite pointer {pointer!r}: names no value in the file") from None
        if current is not None:
            raise HistoryFileError(f"nonfinite pointer {pointer!r}: the value there is {current!r}, not null")
        parent[last] = _NONFINITE_NAMES[name]
    return obj


def _reject_constant(token: str):
    raise ValueError(f"{token} is not valid JSON")


def loads_strict(text: str):
    """Parse JSON the way strict parsers do: ``NaN``, ``Infinity`` and ``-Infinity`` are errors."""
    return json.loads(text, parse_constant=_reject_constant)


def atomic_write_bytes(path: str | os.PathLike, content: bytes) -> None:
    """Write ``content`` to ``path`` so that readers see the old file or the new one, never a part."""
    path = Path(path)
    temp = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # mode follows the umask
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        try:
            os.unlink(temp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """``atomic_write_bytes`` for UTF-8 text."""
    atomic_write_bytes(path, text.encode("utf-8"))


def dumps_history(history: dict) -> str:
    """The strict, lossless text of ``history`` (any JSON-like dict)."""
    body, nonfinite = encode_nonfinite(history)
    document = {"format": HISTORY_FORMAT, **body, "nonfinite": nonfinite}
    return json.dumps(document, allow_nan=False, indent=1) + "\n"


def loads_history(text: str, source: str = "history") -> dict:
    """Parse the text of a history file; non-finite values come back exactly."""
    try:
        document = loads_strict(text)
    except ValueError as error:
        raise HistoryFileError(f"{source}: not a strict JSON history file ({error})") from None
    if not isinstance(document, dict) or document.get("format") != HISTORY_FORMAT:
        raise HistoryFileError(f"{source}: not an {HISTORY_FORMAT} file")
    nonfinite = document.pop("nonfinite", {})
    document.pop("format")
    if not isinstance(nonfinite, dict):
        raise HistoryFileError(f"{source}: 'nonfinite' must be an object")
    return decode_nonfinite(document, nonfinite)


def save_history(path: str | os.PathLike, history: dict) -> None:
    """Write ``history`` as a strict, lossless history file, atomically."""
    atomic_write_text(path, dumps_history(history))


def load_history(path: str | os.PathLike) -> dict:
    """Read a history file written by ``save_history``."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise HistoryFileError(f"{path}: not a strict JSON history file ({error})") from None
    return loads_history(text, source=str(path))


def map_leaves(obj, leaf):
    """``obj`` with every value that is not a dict, list or tuple replaced by ``leaf(value)``."""
    if isinstance(obj, dict):
        return {key: map_leaves(value, leaf) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [map_leaves(value, leaf) for value in obj]
    return leaf(obj)


def read_back(text: str) -> dict:
    """What a reader gets from ``text``: Python's ``json`` rules, and the strict format decoded."""
    document = json.loads(text)
    if isinstance(document, dict) and document.get("format") == HISTORY_FORMAT:
        return loads_history(text)
    return document


def strict_parse_ok(text: str) -> bool:
    """Whether a strict JSON parser accepts ``text`` (no ``NaN`` / ``Infinity`` tokens)."""
    try:
        loads_strict(text)
    except ValueError:
        return False
    return True
