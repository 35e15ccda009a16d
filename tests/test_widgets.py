"""The explorer driven without a browser: every control is set and its pane's outputs are read."""

import math

import pytest

from accumbug.mechanisms import MECHANISMS
from accumbug.widgets import ACCUMULATION_CONTROLS, Explorer, accumulation_view, mechanism_view

REDRAW_BOUND = 2.0  # seconds; generous for a shared CPU. benchmarks/bench_explorer.py measures the real figure.


@pytest.fixture(scope="module")
def explorer():
    return Explorer()


def pane_state(explorer, pane):
    return bytes(explorer.images[pane].value), explorer.notes[pane].value, explorer.views[pane].facts


def change(explorer, name, value, pane="accumulation"):
    before = pane_state(explorer, pane)
    redraws = len(explorer.redraw_seconds[pane])
    explorer.controls[name].value = value
    after = pane_state(explorer, pane)
    assert len(explorer.redraw_seconds[pane]) == redraws + 1, f"{name} did not redraw"
    assert explorer.redraw_seconds[pane][-1] < REDRAW_BOUND
    assert after[0].startswith(b"\x89PNG") and after[1] != before[1]
    assert (after[0] != before[0]) == (name != "serialiser")  # the serialiser changes the note, not the sums
    return after[2]


def test_it_starts_on_the_write_ups_float16_stall(explorer):
    facts = explorer.views["accumulation"].facts
    assert facts["batches"] == 8520 and facts["last_batch"] == 8
    assert facts["console"] == "loss=3.8457" and facts["stall_batch"] is not None
    assert set(explorer.controls) == {*ACCUMULATION_CONTROLS, "mechanism"}


def test_every_accumulation_control_redraws_its_pane(explorer):
    facts = change(explorer, "accumulator", "bfloat16")
    assert facts["read_back"] < 0.1 * facts["exact"]
    facts = change(explorer, "tracker", "seed-broken")
    assert facts["stall_batch"] is not None
    facts = change(explorer, "accumulator", "float16")
    assert facts["console"] == "loss=inf" and facts["read_back"] == 0.0  # the write-up's serialiser
    facts = change(explorer, "serialiser", "strict")
    assert facts["read_back"] == math.inf
    facts = change(explorer, "serialiser", "json-strict")
    assert facts["read_back"] is None and facts["written"].startswith("ValueError")
    facts = change(explorer, "accumulator", "float64")
    assert facts["read_back"] == pytest.approx(facts["exact"], rel=1e-12)
    facts = change(explorer, "batch_size", 64)
    assert facts["batches"] == 2130 and facts["last_batch"] == 56
    facts = change(explorer, "samples", 10_000)
    assert facts["batches"] == 157 and facts["last_batch"] == 16
    facts = change(explorer, "tracker", "seed-fixed")
    assert facts["error_pct"] != 0 and abs(facts["error_pct"]) < 0.1  # a mean of batch means
    facts = change(explorer, "tracker", "exact")
    assert facts["error_pct"] == pytest.approx(0, abs=1e-12)


def test_the_mechanism_control_redraws_its_pane(explorer):
    for key in ("lossy-zero", "broad-sanitiser", "grad-accumulation"):
        facts = change(explorer, "mechanism", key, pane="mechanism")
        assert facts["mechanism"] == key
    assert explorer.views["mechanism"].facts["weights"] is False
    assert "fits all" in explorer.notes["mechanism"].value


def test_summary_and_timing(explorer):
    assert explorer.summary().startswith("console loss=")
    assert "fits all the evidence" in explorer.summary("mechanism")
    assert explorer.timing().startswith("accumulation: ")


@pytest.mark.parametrize("key", [m.key for m in MECHANISMS])
def test_mechanism_view_for_every_case(key):
    view = mechanism_view(key)
    assert view.facts["mechanism"] == key and "cause" in view.html


@pytest.mark.parametrize("kwargs, message", [
    ({"tracker": "nope"}, "tracker='nope': unknown; allowed: seed-broken, seed-fixed, exact"),
    ({"accumulator": "auto"}, "accumulator='auto': unknown; allowed: python, float64"),
    ({"batch_size": 0}, "batch_size=0: must be between 1 and samples"),
    ({"serialiser": "yaml"}, "serialiser='yaml': unknown"),
])
def test_accumulation_view_rejects_bad_values(kwargs, message):
    values = {"samples": 1000, "batch_size": 16, "accumulator": "float64", "tracker": "exact", "serialiser": "strict"}
    with pytest.raises(ValueError, match=message):
        accumulation_view(**{**values, **kwargs})
