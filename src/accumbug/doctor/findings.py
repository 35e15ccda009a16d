"""What the doctor reports: one ``Finding`` per problem, each under a code of a fixed vocabulary.

A finding names the file, a line where there is one, the evidence (what was seen), the
consequence (which value goes wrong, and by how much where it can be computed) and the fix.
``FINDING_CODES`` is the vocabulary, with each code's severity: a wrong value saved
(``error``), a value that is probably wrong or a file that strict readers reject
(``warning``), or a cost that changes no value (``info``). Reports list the most serious first.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

__all__ = ["FINDING_CODES", "SEVERITIES", "Code", "Finding", "UnusableInput", "ordered"]

SEVERITIES = ("error", "warning", "info")  # most serious first


@dataclass(frozen=True)
class Code:
    """One entry of the vocabulary: its severity, what it means, and the fix the doctor suggests."""

    severity: str
    meaning: str
    fix: str


FINDING_CODES: dict[str, Code] = {
    "mean-of-batch-means": Code(
        "error", "a loss summed per batch and divided by a batch count, where batches can differ in size",
        "weight by batch size, summed in float64: loss_sum.add_(loss.detach(), alpha=n); total += n; divide once "
        "per epoch (or accumbug.ExactMean: update(loss.detach(), n=len(targets))); drop_last=True is no fix: it "
        "only hides the difference by leaving the last, partial batch's samples out of the epoch"),
    "half-precision-accumulator": Code(
        "error", "a running sum kept in float16 or bfloat16",
        "keep the sum in float64 (torch.zeros((), dtype=torch.float64), or accumbug.ExactMean) "
        "or add loss.item() to a Python float"),
    "lossy-serialiser": Code(
        "error", "a writer that maps non-finite or non-float values to 0.0 or to a number",
        "write strict, lossless JSON: null plus the original value (accumbug.history.dumps_history); "
        "fail on unknown types"),
    "aliased-state": Code(
        "error", "a history that stores a tracker's tensor or list that is later zeroed or cleared in place",
        "append float(value) (or .item()) to the history, never the tracker's own tensor or list"),
    "read-after-reset": Code(
        "error", "epoch values read after the tracker's reset",
        "read and save the epoch's metrics before reset()"),
    "unreduced-across-ranks": Code(
        "error", "epoch metrics of a multi-rank run logged from one rank without all_reduce or a gather",
        "all_reduce the sums and counts (not the means) before logging"),
    "padded-duplicates-counted": Code(
        "warning", "a cross-rank reduction that counts DistributedSampler's padding repeats",
        "count each sample once: mask the padding rows (accumbug.distributed.rank_shard's counted), or evaluate "
        "with a sampler that does not pad; DistributedSampler(drop_last=True) is no fix: it leaves up to "
        "world size - 1 samples out of the epoch"),
    "host-sync-per-step": Code(
        "info", ".item() or float(tensor) in the per-batch path: a host sync per step on a GPU, not a wrong value",
        "accumulate on the device in float64 (loss_sum = torch.zeros((), dtype=torch.float64, device=...); "
        "loss_sum.add_(loss.detach(), alpha=n)), or accumbug.ExactMean; read the value once per epoch"),
    "invalid-json-tokens": Code(
        "warning", "a history file with NaN/Infinity tokens that strict JSON readers reject",
        "write null plus the original value (accumbug.history.dumps_history), or allow_nan=False to fail loudly"),
    "non-finite-values": Code(
        "warning", "NaN or inf in a history's series",
        "find the batch that went non-finite (count non-finite batches per epoch) and keep the value, do not hide it"),
    "zeroed-history": Code(
        "error", "a loss series of exact zeros beside signs that training ran",
        "look for the habits that save zeros (run the doctor on the training script): a history that holds the "
        "tracker's own tensor (aliased-state), a writer that saves 0.0 for what is not a plain float "
        "(lossy-serialiser), metrics read after reset() (read-after-reset); append float(value) before reset() "
        "and write strictly"),
    "file-disagrees-with-console": Code(
        "error", "a history whose values differ from the console log given with it beyond print rounding",
        "save the value the console printed, converted with float() when it is appended, with a strict writer"),
    "nonfinite-hidden": Code(
        "warning", "a tracker that drops a non-finite batch value or counts it as 0, so the epoch value hides it",
        "keep the value (the epoch mean becomes NaN or inf) and count the non-finite batches "
        "(accumbug.ExactMean or ExactTracker); find the batch that went non-finite rather than average it away"),
    "reset-keeps-state": Code(
        "error", "a tracker whose reset() leaves an earlier epoch's sums or counts in the next epoch's value",
        "put every sum and count back to a fresh default in reset() (MetricTracker.add_state does), and test it: "
        "an epoch, reset(), one batch, compare"),
}


@dataclass(frozen=True)
class Finding:
    """One problem: ``code`` (a key of ``FINDING_CODES``), where, what was seen, what it does, its fix."""

    code: str
    path: str
    line: int | None
    evidence: str
    consequence: str
    fix: str = ""

    def __post_init__(self) -> None:
        if self.code not in FINDING_CODES:
            raise ValueError(f"code={self.code!r}: not in the doctor's vocabulary; "
                             f"allowed: {', '.join(FINDING_CODES)}")
        if not self.fix:
            object.__setattr__(self, "fix", FINDING_CODES[self.code].fix)

    @property
    def severity(self) -> str:
        return FINDING_CODES[self.code].severity

    def as_dict(self) -> dict:
        """The finding as ``--json`` prints it: its fields, its severity and a one-line message."""
        return {**asdict(self), "severity": self.severity,
                "message": f"{FINDING_CODES[self.code].meaning}: {self.evidence}"}


class UnusableInput(Exception):
    """A path the doctor cannot read: missing, unreadable, binary, too large or of no kind it knows."""


def ordered(findings: list[Finding]) -> list[Finding]:
    """The findings grouped by file, the most serious first within each, then by line."""
    return sorted(findings, key=lambda f: (f.path, SEVERITIES.index(f.severity), f.line or 0, f.code))
