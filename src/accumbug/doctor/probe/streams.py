"""The streams the probe feeds a tracker, each with its exact answer, and what the tracker's answer says.

Every stream is built from per-sample values, and its exact answer is their mean in float64
(``math.fsum``), never anything the tracker computed. The values of a batch are its level plus
pairs of offsets ``+k/16, -k/16``, so each batch mean is exactly its level, and every level, batch
sum and running sum is a short binary fraction: a float16 or bfloat16 sum is exact wherever a
stream does not aim at it, and a stream's error comes from the one thing it tests.

* uneven batches with a partial last one: a mean of batch means (``mean-of-batch-means``);
  for a class whose count has a default, ``update(v)`` without it too: the common misuse;
* a batch with one NaN sample: the NaN dropped or counted as 0 (``nonfinite-hidden``);
* sums beyond float16's largest number, and many small addends: a half-precision sum that
  overflows or stalls (``half-precision-accumulator``);
* a read after ``reset()``: 0.0 or another plausible number, where NaN or an error would show
  (``read-after-reset``);
* the value read before ``reset()``, looked at again after it and the next epoch: the
  tracker's own state handed out (``aliased-state``);
* the next epoch after ``reset()``: the earlier epoch still in it (``reset-keeps-state``).

One process only: what ranks do (``unreduced-across-ranks``, ``padded-duplicates-counted``)
is not measured here. Described in ``docs/doctor.md`` ("Probe your own tracker").
"""

from __future__ import annotations

import math
import random
import warnings
from dataclasses import dataclass, replace

import torch

__all__ = ["TOLERANCE", "Measured", "measure"]

TOLERANCE = 1e-5  # relative: far above float32's rounding of a stream's exact sums, far below any error provoked
UNEVEN = ((32, 2.5), (32, 2.0), (16, 1.5), (32, 1.0), (8, 0.5))  # (batch size, batch mean); the last is partial
WITH_NAN = ((16, 1.5), (16, 1.0), (16, 1.0), (16, 0.5))  # the second batch gets one NaN sample
EPOCH = ((16, 1.5), (16, 1.25), (16, 1.0), (16, 0.75))
EARLIER = ((16, 3.0), (16, 2.5), (16, 2.0), (16, 1.5))  # an epoch before EPOCH, its values higher
FLOAT16_MAX = 65504.0
HALF_ROUNDING = 2.0 ** -8  # relative: a value rounded to float16 (2^-11) or bfloat16 (2^-8) is within it


@dataclass(frozen=True)
class Measured:
    """One stream's outcome: its ``code`` (None: the tracker got it right), the two values compared under
    ``labels``, and what was seen in words; ``failed``: the tracker raised where nothing should, unmeasured."""

    stream: str
    code: str | None
    expected: float | None
    got: float | None
    evidence: str
    labels: tuple[str, str] = ("expected", "got")
    failed: bool = False

    @property
    def relative_error(self) -> float | None:
        """``(got - expected) / |expected|``; None where that means nothing (a NaN or 0 expected, a NaN got)."""
        if self.expected is None or self.got is None or self.labels != ("expected", "got"):
            return None
        if not (math.isfinite(self.expected) and self.expected) or math.isnan(self.got):
            return None
        return (self.got - self.expected) / abs(self.expected)


def agrees(got: float, want: float) -> bool:
    """Equal within ``TOLERANCE``, NaN with NaN and an infinity with itself included."""
    if math.isnan(want) or math.isnan(got):
        return math.isnan(want) and math.isnan(got)
    return got == want or math.isclose(got, want, rel_tol=TOLERANCE, abs_tol=0.0)


def _values(level: float, size: int) -> list[float]:
    """``size`` per-sample values whose mean is exactly ``level``: pairs ``level +- k/16`` (k = 1..4 in turn)."""
    offsets = [(j % 4 + 1) / 16 for j in range(size // 2)]
    return [level + sign * offset for offset in offsets for sign in (1, -1)] + [level] * (size % 2)


def _epoch(plan) -> list[list[float]]:
    return [_values(level, size) for size, level in plan]


def _mean(values) -> float:
    values = list(values)
    return math.fsum(values) / len(values)


def exact(epoch) -> float:
    """The epoch's answer: the mean of every per-sample value, in float64."""
    return _mean(v for batch in epoch for v in batch)


def _feed(subject, tracker, epoch, counted: bool = True) -> None:
    for batch in epoch:
        subject.feed(tracker, _mean(batch), len(batch), counted)


def _number(value) -> float:
    """What the tracker handed out, as one Python float; ``TypeError`` naming it when it is not one number."""
    try:
        return float(value)
    except (TypeError, ValueError, RuntimeError):
        shape = f" of shape {tuple(value.shape)}" if isinstance(value, torch.Tensor) else ""
        raise TypeError(f"the value read is a {type(value).__name__}{shape}, not one number") from None


def _epoch_value(subject, epoch, counted: bool = True) -> tuple[object, float]:
    """A fresh tracker fed ``epoch``, and the number it reads."""
    tracker = subject.make()
    _feed(subject, tracker, epoch, counted)
    return tracker, _number(subject.read(tracker))


def uneven(subject, counted: bool = True) -> Measured:
    epoch = _epoch(UNEVEN)
    _, got = _epoch_value(subject, epoch, counted)
    want, naive = exact(epoch), _mean(_mean(batch) for batch in epoch)
    sizes = f"batches of {', '.join(str(size) for size, _ in UNEVEN)}"
    if agrees(got, want):
        return Measured("uneven batches", None, want, got, f"{sizes}: the sample-weighted mean")
    if abs(got - want) < abs(got - naive) and math.isclose(got, want, rel_tol=HALF_ROUNDING):
        return Measured("uneven batches", "half-precision-accumulator", want, got, f"{sizes}: weighted right, "
                        "but rounded to the few digits of half precision")
    seen = (f"the mean of the {len(epoch)} batch means: the last batch of {UNEVEN[-1][0]} weighs as much as one "
            f"of {UNEVEN[0][0]}" if agrees(got, naive) else
            f"neither the sample-weighted mean nor the mean of batch means ({naive:.6g})")
    return Measured("uneven batches", "mean-of-batch-means", want, got, f"{sizes}: got {seen}")


def without_count(subject) -> Measured:
    """``uneven`` fed ``update(v)`` alone: the call a count with a default invites."""
    shape = subject.shape
    name = f"update(v) without {shape.count}"
    try:
        result = uneven(subject, counted=False)
    except Exception as error:  # noqa: BLE001 - refusing a batch mean without its count is the right answer
        return Measured(name, None, exact(_epoch(UNEVEN)), None,
                        f"refused ({type(error).__name__}: {error}): no mean of batch means by default")
    misuse = f"called as update(v), {shape.count} defaulting to {shape.count_default!r} (the common misuse); "
    return replace(result, stream=name, evidence=misuse + result.evidence)


def nan_batch(subject) -> Measured:
    epoch = _epoch(WITH_NAN)
    epoch[1][0] = math.nan
    finite = [batch for batch in epoch if not any(math.isnan(v) for v in batch)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            tracker, got = _epoch_value(subject, epoch)
        except Exception as error:  # noqa: BLE001 - refusing a NaN loudly is an answer too
            return Measured("a NaN batch", None, math.nan, None, f"refused loudly: {type(error).__name__}: {error}")
    if math.isnan(got):
        counted = [f"{k}={v}" for k, v in subject.counts(tracker).items() if "nonfinite" in k.lower().replace("_", "")
                   or "nan" in k.lower()]
        return Measured("a NaN batch", None, math.nan, got, "kept: the epoch value is NaN" + (
            f", and counted ({', '.join(counted)})" if counted else "; nothing counts the non-finite batches"))
    dropped, zeroed = exact(finite), math.fsum(v for batch in finite for v in batch) / sum(map(len, epoch))
    how = ("dropped: the mean of the other batches" if agrees(got, dropped) else
           "counted as 0" if agrees(got, zeroed) else "replaced by a number")
    warned = f", with a warning ({str(caught[0].message).splitlines()[0]})" if caught else ", silently"
    return Measured("a NaN batch", "nonfinite-hidden", math.nan, got,
                    f"one sample of the second batch is NaN: {how}{warned}")


def _plan(batches: int, size: int, base: float, step: float, spread: int, seed: int) -> list[tuple[int, float]]:
    """``batches`` equal batches of ``size`` whose means are ``base + k * step``, k drawn from [-spread, spread]."""
    draw = random.Random(seed)
    return [(size, base + draw.randint(-spread, spread) * step) for _ in range(batches)]


def _precision(subject, name: str, plan, short: str) -> Measured:
    """A stream of equal batches, so only the sum's precision can make the answer wrong."""
    epoch = _epoch(plan)
    _, got = _epoch_value(subject, epoch)
    want = exact(epoch)
    total, means = math.fsum(map(math.fsum, epoch)), math.fsum(map(_mean, epoch))
    sizes = f"{len(plan)} batches of {plan[0][0]}, summing to {total:,.10g} (their means to {means:,.10g})"
    if agrees(got, want):
        return Measured(name, None, want, got, f"{sizes}: exact")
    if math.isinf(got) or math.isnan(got):
        seen = f"overflowed to {got}: the running sum passed {FLOAT16_MAX:,.0f}, float16's largest number"
    elif got < want:
        seen = short
    else:
        seen = "rounded: the running sum lost the low bits of each addend"
    return Measured(name, "half-precision-accumulator", want, got, f"{sizes}: {seen}")


def large_sums(subject) -> Measured:
    return _precision(subject, "sums beyond float16", _plan(100, 32, 1000.0, 0.25, 64, seed=1),
                      "rounded down: the running sum lost the low bits of each addend")


def small_addends(subject) -> Measured:
    return _precision(subject, "many small addends", _plan(3072, 4, 1.0, 1 / 64, 16, seed=2),
                      "stalled: once the running sum is large, one batch is less than half the gap to its next "
                      "number, and adding it changes nothing")


def read_after_reset(subject) -> Measured:
    name, labels = "read after reset", ("before reset", "after reset")
    tracker, before = _epoch_value(subject, _epoch(EPOCH))
    tracker.reset()
    try:
        after = _number(subject.read(tracker))
    except Exception as error:  # noqa: BLE001 - an empty tracker that refuses to be read: a read after reset fails loudly
        return Measured(name, None, before, None, f"raises {type(error).__name__} ({error}) after reset(): a read "
                        "after reset fails loudly; read the epoch's value before it", labels)
    if math.isnan(after):
        return Measured(name, None, before, after, "NaN after reset(): a read after reset shows as NaN, not as a "
                        "loss; read the epoch's value before it", labels)
    if agrees(after, before):
        return Measured(name, None, before, after, "unchanged by reset() (the next epoch's line says whether the "
                        "next epoch starts clean)", labels)
    return Measured(name, "read-after-reset", before, after, f"{after!r} after reset(): a loop that reads the "
                    "epoch's value after reset() saves a plausible number without an error", labels)


def _kind(value) -> str:
    if isinstance(value, torch.Tensor):
        return f"{value.dim()}-dim {str(value.dtype).removeprefix('torch.')} tensor"
    return f"Python {type(value).__name__}"


def aliased(subject) -> Measured:
    """Keep what the tracker hands out, reset it and feed the next epoch: does what was kept change?"""
    name, labels = "value kept over reset", ("when read", "later")
    tracker = subject.make()
    _feed(subject, tracker, _epoch(EARLIER))
    value = subject.read(tracker)
    kept = _number(value)
    tracker.reset()
    after_reset = _number(value)
    _feed(subject, tracker, _epoch(EPOCH))
    subject.read(tracker)
    later = _number(value)
    changed = next((v for v in (after_reset, later) if not agrees(v, kept)), None)
    if changed is None:
        return Measured(name, None, kept, later, f"a {_kind(value)}, unchanged by reset() and the next epoch",
                        labels)
    return Measured(name, "aliased-state", kept, changed, f"the {_kind(value)} read before reset() later holds "
                    f"{changed:.6g}: it is the tracker's own state, changed in place by reset() and the next "
                    "epoch; a history that appends it loses the epoch's value", labels)


def next_epoch(subject) -> Measured:
    name = "the next epoch"
    tracker = subject.make()
    _feed(subject, tracker, _epoch(EARLIER))
    subject.read(tracker)
    tracker.reset()
    _feed(subject, tracker, _epoch(EPOCH))
    got = _number(subject.read(tracker))
    want, both = exact(_epoch(EPOCH)), exact(_epoch(EARLIER + EPOCH))
    if agrees(got, want):
        return Measured(name, None, want, got, "reset() starts the next epoch clean")
    seen = ("the mean of both epochs together: reset() left the earlier epoch's sums and counts in place"
            if agrees(got, both) else "reset() left part of the earlier epoch in place")
    return Measured(name, "reset-keeps-state", want, got, f"an epoch, reset(), an epoch: got {seen}")


def measure(subject) -> list[Measured]:
    """Every stream fed to fresh instances of the subject's class; a stream the tracker raises on is ``failed``."""
    streams = [("uneven batches", uneven), ("a NaN batch", nan_batch), ("sums beyond float16", large_sums),
               ("many small addends", small_addends), ("read after reset", read_after_reset),
               ("value kept over reset", aliased), ("the next epoch", next_epoch)]
    if subject.shape.count_optional:
        streams.insert(1, (f"update(v) without {subject.shape.count}", without_count))
    results = []
    for name, stream in streams:
        with warnings.catch_warnings(record=True):  # what the tracker warns is the report's to say, not stderr's
            warnings.simplefilter("always")
            try:
                results.append(stream(subject))
            except Exception as error:  # noqa: BLE001 - the tracker raised on ordinary batches: this stream is unmeasured
                results.append(Measured(name, None, None, None, f"not measured: {type(error).__name__}: {error}",
                                        failed=True))
    return results
