"""``doctor --probe``: a tracker class imported, fed streams whose exact answers are known, reported by code.

The package's own trackers must come out as they are built (each specimen with the codes it
embodies, the exact ones clean), and so must the small trackers of ``probe_fixtures/meters.py``,
written the way users write them. The exact answers are recomputed here from the streams' plans,
not read from the probe.
"""

import importlib.util
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

from accumbug.cli import main
from accumbug.doctor.findings import FINDING_CODES, UnusableInput
from accumbug.doctor.probe import probe, run_probes
from accumbug.doctor.probe.streams import EARLIER, EPOCH, UNEVEN, _epoch, _mean

METERS = "tests/probe_fixtures/meters.py"
INCIDENT = "accumbug.specimens.incident_trackers"
GALLERY = "accumbug.specimens.gallery_trackers"
RANKS = "accumbug.specimens.rank_trackers"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _in_the_repository(monkeypatch):
    """Targets are given relative to the repository, as a user gives them relative to where they run."""
    monkeypatch.chdir(ROOT)


def _weighted(plan) -> float:
    return sum(size * level for size, level in plan) / sum(size for size, _ in plan)


def _codes(target: str) -> dict[str, str]:
    """Each stream that gave a finding, and its code."""
    return {r.stream: r.code for r in probe(target).results if r.code}


def _result(target: str, stream: str):
    return next(r for r in probe(target).results if r.stream == stream)


# -- the package's own trackers -------------------------------------------------------------------------

HALF = {"uneven batches", "sums beyond float16", "many small addends"}


@pytest.mark.parametrize(("target", "expected"), [
    (f"{INCIDENT}:IncidentBrokenTracker", {}),  # the write-up's "broken" tracker is the exact one
    (f"{INCIDENT}:IncidentFixedTracker", {"uneven batches": "mean-of-batch-means"}),
    (f"{INCIDENT}:IncidentBrokenTracker(accumulator='float64')", {}),
    (f"{INCIDENT}:IncidentBrokenTracker(accumulator='float32')", {}),
    (f"{INCIDENT}:IncidentBrokenTracker(accumulator='auto')", {}),  # float32 outputs: a float32 sum
    (f"{GALLERY}:InPlaceMeanTracker", {"value kept over reset": "aliased-state"}),
    (f"{GALLERY}:InPlaceMeanFixedTracker", {"uneven batches": "mean-of-batch-means",
                                            "value kept over reset": "aliased-state"}),
    (f"{GALLERY}:TensorLossTracker", {}),  # its value is exact; only its type (a tensor) is the habit
    (f"{GALLERY}:TensorLossFixedTracker", {"uneven batches": "mean-of-batch-means"}),
    (f"{GALLERY}:GuardedTracker", {"read after reset": "read-after-reset"}),
    (f"{RANKS}:RankZeroTracker", {}),  # in one process each equals ExactTracker: ranks are not probed
    (f"{RANKS}:RankMeanTracker", {}),
    (f"{RANKS}:PaddedTracker", {}),
    ("accumbug.trackers:ExactTracker", {}),
    ("accumbug:ExactMean", {}),
])
def test_each_package_tracker_gets_the_codes_it_embodies(target, expected):
    assert _codes(target) == expected


@pytest.mark.parametrize("accumulator", ["float16", "bfloat16"])
def test_half_precision_accumulators_are_caught_on_the_precision_streams(accumulator):
    broken = _codes(f"{INCIDENT}:IncidentBrokenTracker(accumulator={accumulator!r})")
    fixed = _codes(f"{INCIDENT}:IncidentFixedTracker(accumulator={accumulator!r})")
    assert broken == dict.fromkeys(HALF, "half-precision-accumulator")  # the uneven one: the last division rounds
    assert fixed == {**dict.fromkeys(HALF - {"uneven batches"}, "half-precision-accumulator"),
                     "uneven batches": "mean-of-batch-means"}


def test_a_float16_sum_overflows_to_inf_and_a_bfloat16_one_stalls():
    overflow = _result(f"{INCIDENT}:IncidentBrokenTracker(accumulator='float16')", "sums beyond float16")
    assert overflow.got == math.inf and "65,504" in overflow.evidence
    stall = _result(f"{INCIDENT}:IncidentFixedTracker(accumulator='bfloat16')", "many small addends")
    assert stall.got < stall.expected / 2 and "stalled" in stall.evidence


def test_the_mean_of_batch_means_is_measured_against_the_per_sample_mean():
    result = _result(f"{INCIDENT}:IncidentFixedTracker", "uneven batches")
    assert result.expected == pytest.approx(_weighted(UNEVEN), rel=1e-15)
    assert result.got == pytest.approx(_mean(level for _, level in UNEVEN), rel=1e-7)
    assert result.relative_error == pytest.approx(result.got / result.expected - 1)
    assert "the last batch of 8 weighs as much as one of 32" in result.evidence


def test_exact_trackers_keep_and_count_a_nan_batch():
    for target, key in (("accumbug.trackers:ExactTracker", "nonfinite_batches=1"), ("accumbug:ExactMean",
                                                                                    "nonfinite=1")):
        result = _result(target, "a NaN batch")
        assert result.code is None and math.isnan(result.got) and key in result.evidence


def test_exact_mean_refuses_a_batch_mean_without_its_count():
    result = _result("accumbug:ExactMean", "update(v) without n")
    assert result.code is None and result.got is None and "ValueError" in result.evidence


# -- trackers written as users write them ----------------------------------------------------------------


def test_an_average_meter_is_right_with_n_and_a_mean_of_batch_means_without_it():
    report = probe(f"{METERS}:AverageMeter")
    assert "AverageMeter" in report.shape and report.path == METERS and report.line is not None
    codes = {r.stream: r.code for r in report.results}
    assert codes["uneven batches"] is None
    assert codes["update(v) without n"] == "mean-of-batch-means"
    assert codes["read after reset"] == "read-after-reset"  # .avg is 0 after reset(): a plausible number
    misuse = next(r for r in report.results if r.stream == "update(v) without n")
    assert "the common misuse" in misuse.evidence and "n defaulting to 1" in misuse.evidence
    assert misuse.got == pytest.approx(_mean(level for _, level in UNEVEN))


def test_a_reset_that_does_not_clear_is_caught():
    result = _result(f"{METERS}:StickyMeter", "the next epoch")
    assert result.code == "reset-keeps-state"
    assert result.expected == _weighted(EPOCH) and result.got == pytest.approx(_weighted(EARLIER + EPOCH))
    assert "left the earlier epoch's sums and counts in place" in result.evidence


def test_a_nan_dropped_silently_is_caught():
    result = _result(f"{METERS}:NanSkippingMeter", "a NaN batch")
    assert result.code == "nonfinite-hidden" and "dropped" in result.evidence and "silently" in result.evidence


def test_torchmetrics_mean_metric_drops_a_nan_with_a_warning_by_default():
    pytest.importorskip("torchmetrics")
    codes = _codes("torchmetrics:MeanMetric")
    assert codes == {"update(v) without weight": "mean-of-batch-means", "a NaN batch": "nonfinite-hidden"}
    nan = _result("torchmetrics:MeanMetric", "a NaN batch")
    assert "dropped" in nan.evidence and "with a warning" in nan.evidence  # nan_strategy="warn", the default
    assert "a NaN batch" not in _codes("torchmetrics:MeanMetric(nan_strategy='disable')")  # kept: NaN
    refused = _result("torchmetrics:MeanMetric(nan_strategy='error')", "a NaN batch")
    assert refused.code is None and "refused loudly" in refused.evidence


def test_every_probe_code_is_in_the_doctors_vocabulary():
    targets = [f"{METERS}:{name}" for name in ("AverageMeter", "StickyMeter", "NanSkippingMeter")]
    assert {f.code for t in targets for f in probe(t).findings} <= set(FINDING_CODES)


def test_the_streams_batches_have_exactly_their_levels_as_means():
    """Every batch mean is exactly its level, so a half-precision sum is exact where a stream does not aim at it."""
    for plan in (UNEVEN, EPOCH, EARLIER):
        assert [_mean(batch) for batch in _epoch(plan)] == [level for _, level in plan]
        assert [len(batch) for batch in _epoch(plan)] == [size for size, _ in plan]


# -- the command line --------------------------------------------------------------------------------------


def test_exit_codes_0_clean_1_finding(capsys):
    assert main(["doctor", "--probe", "accumbug.trackers:ExactTracker"]) == 0
    clean = capsys.readouterr().out
    assert "0 findings in 7 streams fed to 1 class" in clean and "accumbug's Tracker protocol" in clean
    assert main(["doctor", "--probe", f"{METERS}:AverageMeter", "--probe", "accumbug:ExactMean"]) == 1
    out = capsys.readouterr().out
    assert f"probe {METERS}:AverageMeter ({METERS}, line" in out and "fed to 2 classes" in out
    assert "mean-of-batch-means        update(v) without n: expected 1.7, got 1.5 (error -11.8%)" in out


def test_json_is_strict_and_carries_the_findings(capsys):
    assert main(["doctor", "--probe", f"{METERS}:NanSkippingMeter", "--format", "json"]) == 1
    document = json.loads(capsys.readouterr().out, parse_constant=lambda token: pytest.fail(token))
    (only,) = document["probes"]
    nan = next(s for s in only["streams"] if s["stream"] == "a NaN batch")
    assert nan["status"] == nan["code"] == "nonfinite-hidden" and nan["expected"] == "nan" and nan["got"] == 1.0
    assert {f["code"] for f in only["findings"]} == {s["code"] for s in only["streams"] if s["code"]}


def test_github_format_annotates_the_class_definition(capsys):
    assert main(["doctor", "--probe", f"{METERS}:StickyMeter", "--format", "github"]) == 1
    lines = capsys.readouterr().out.splitlines()
    line = next(n for n, text in enumerate((ROOT / METERS).read_text().splitlines(), 1)
                if text.startswith("class StickyMeter"))
    assert f"::error file={METERS},line={line},title=reset-keeps-state::" in "\n".join(lines)


@pytest.mark.parametrize(("target", "words"), [
    (f"{METERS}:WindowMeter", "WindowMeter needs arguments: window; give them as"),
    (f"{METERS}:Stopwatch", "Stopwatch has no update()"),
    (f"{METERS}:Nope", "no class Nope there; its classes: AverageMeter, NanSkippingMeter"),
    ("tests/probe_fixtures/missing.py:AverageMeter", "no such file"),
    ("no_such_module_here:Tracker", "no module named 'no_such_module_here'"),
    (f"{METERS}:WindowMeter(window=print)", "must be Python literals"),
    ("AverageMeter", "expected path/to/file.py:ClassName or module.path:ClassName"),
])
def test_unusable_targets_are_one_line_and_exit_2(capsys, target, words):
    assert main(["doctor", "--probe", target]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and words in captured.err and len(captured.err.strip().splitlines()) == 1


def test_a_module_that_fails_to_import_is_named(tmp_path, capsys):
    (tmp_path / "broken.py").write_text("import nothing_of_that_name_exists\n")
    assert main(["doctor", "--probe", f"{tmp_path / 'broken.py'}:Meter"]) == 2
    assert "no module named 'nothing_of_that_name_exists'" in capsys.readouterr().err
    (tmp_path / "raises.py").write_text("raise RuntimeError('needs a GPU')\n")
    assert main(["doctor", "--probe", f"{tmp_path / 'raises.py'}:Meter"]) == 2
    assert "raised RuntimeError: needs a GPU" in capsys.readouterr().err


def test_a_file_target_imports_its_neighbours(tmp_path):
    (tmp_path / "helpers.py").write_text("START = 0.0\n")
    (tmp_path / "meter.py").write_text((ROOT / METERS).read_text().replace("import math", "import math\n"
                                                                            "from helpers import START"))
    assert probe(f"{tmp_path / 'meter.py'}:AverageMeter").shape.startswith("update(val, n=1)")


def test_a_tracker_that_raises_on_ordinary_batches_is_not_measured_and_exits_2(tmp_path, capsys):
    (tmp_path / "capped.py").write_text(
        "class Capped:\n    def __init__(self):\n        self.reset()\n    def reset(self):\n"
        "        self.total, self.count, self.avg = 0.0, 0, 0.0\n    def update(self, val, n):\n"
        "        if val > 100:\n            raise OverflowError('loss too large')\n"
        "        self.total += val * n\n        self.count += n\n        self.avg = self.total / self.count\n")
    text, code = run_probes([f"{tmp_path / 'capped.py'}:Capped"])
    assert code == 2 and re.search(r"^  not measured +sums beyond float16$", text, flags=re.MULTILINE)
    assert "OverflowError: loss too large" in text and text.endswith("; 1 stream not measured")


def test_paths_and_probe_together_or_neither_are_refused(capsys):
    assert main(["doctor", "train.py", "--probe", f"{METERS}:AverageMeter"]) == 2
    assert "not both" in capsys.readouterr().err
    assert main(["doctor"]) == 2
    assert "--probe FILE.py:CLASS" in capsys.readouterr().err


def test_help_says_the_probe_runs_your_code(capsys):
    with pytest.raises(SystemExit):
        main(["doctor", "--help"])
    assert "RUNS your code" in capsys.readouterr().out


def test_reading_paths_never_loads_the_probe(tmp_path):
    """Only --probe imports the user's classes (and the probe itself): the doctor's file checks never run code."""
    script = tmp_path / "train.py"
    script.write_text("print('hello')\n")
    code = ("import sys; from accumbug.cli import main; main(['doctor', sys.argv[1]]); "
            "print('accumbug.doctor.probe' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code, str(script)], capture_output=True, text=True, check=False)
    assert done.stdout.strip().splitlines()[-1] == "False", done.stderr


def test_unusable_input_is_raised_before_anything_is_fed():
    with pytest.raises(UnusableInput, match="WindowMeter needs arguments"):
        run_probes(["accumbug.trackers:ExactTracker", f"{METERS}:WindowMeter"])


# -- the page ------------------------------------------------------------------------------------------------


def _page_section() -> str:
    text = (ROOT / "docs" / "doctor.md").read_text(encoding="utf-8")
    return text[text.index("## Probe your own tracker"):]


def test_the_pages_example_is_what_the_probe_prints(capsys):
    block = re.search(r"^```\n\$ python -m accumbug (.*?)\n(.*?)^```", _page_section(), flags=re.MULTILINE | re.DOTALL)
    assert main(block.group(1).split()) == 1
    assert capsys.readouterr().out == block.group(2)


def test_the_pages_table_is_what_the_probe_finds():
    rows = re.findall(r"^\| `([^`]+:[^`]+)` \| (.*) \|$", _page_section(), flags=re.MULTILINE)
    assert len(rows) >= 19
    for target, codes in rows:
        if target.startswith("torchmetrics:") and importlib.util.find_spec("torchmetrics") is None:
            continue
        listed = set(re.findall(r"`([a-z0-9-]+)`", codes))
        assert {f.code for f in probe(target).findings} == listed, target
