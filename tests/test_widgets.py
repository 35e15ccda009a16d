"""The explorer driven without a browser: every control is set and its pane's outputs are read."""

import math

import pytest

from accumbug.lessons.mechanisms import MECHANISMS
from accumbug.lessons.widgets import ACCUMULATION_CONTROLS, Explorer, accumulation_view, mechanism_view


@pytest.fixture(scope="module")
def explorer():
    """The explorer as the notebook makes it: it runs the whole mechanism gallery first (seconds), so the
    tests that drive it are slow; ``accumulation_view`` and ``mechanism_view`` are tested quickly below."""
    return Explorer()


def pane_state(explorer, pane):
    return bytes(explorer.images[pane].value), explorer.notes[pane].value, explorer.views[pane].facts


def change(explorer, name, value, pane="accumulation"):
    before = pane_state(explorer, pane)
    redraws = len(explorer.redraw_seconds[pane])
    explorer.controls[name].value = value
    after = pane_state(explorer, pane)
    assert len(explorer.redraw_seconds[pane]) == redraws + 1, f"{name} did not redraw"
    assert after[0].startswith(b"\x89PNG") and after[1] != before[1]
    assert (after[0] != before[0]) == (name != "serialiser")  # the serialiser changes the note, not the sums
    return after[2]


@pytest.mark.slow
def test_it_starts_on_the_write_ups_float16_stall(explorer):
    facts = explorer.views["accumulation"].facts
    assert facts["batches"] == 8520 and facts["last_batch"] == 8
    assert facts["console"] == "loss=3.8457" and facts["stall_batch"] is not None
    assert set(explorer.controls) == {*ACCUMULATION_CONTROLS, "mechanism"}


@pytest.mark.slow
def test_every_accumulation_control_redraws_its_pane(explorer):
    facts = change(explorer, "accumulator", "bfloat16")
    assert facts["read_back"] < 0.1 * facts["exact"]
    facts = change(explorer, "tracker", "incident-broken")
    assert facts["stall_batch"] is not None
    facts = change(explorer, "accumulator", "float16")
    assert facts["console"] == "loss=inf" and facts["read_back"] == 0.0  # the write-up's serialiser
    facts = change(explorer, "serialiser", "strict")
    assert facts["read_back"] == math.inf
    facts = change(explorer, "serialiser", "json-strict")
    assert facts["read_back"] is None and facts["written"].startswith("ValueError")
    facts = change(explorer, "accumulator", "float64")
    assert facts["read_back"] == pytest.approx(facts["exact"], rel=1e-7)  # float32 batch means, summed exactly
    exact = facts["exact"]
    facts = change(explorer, "batch_size", 64)
    assert facts["batches"] == 2130 and facts["last_batch"] == 56
    assert facts["exact"] == exact  # the same samples, regrouped: the exact loss stays put
    facts = change(explorer, "samples", 10_000)
    assert facts["batches"] == 157 and facts["last_batch"] == 16
    facts = change(explorer, "tracker", "incident-fixed")
    assert facts["error_pct"] != 0 and abs(facts["error_pct"]) < 0.1  # a mean of batch means
    facts = change(explorer, "tracker", "exact")
    assert facts["error_pct"] == pytest.approx(0, abs=1e-5)


@pytest.mark.slow
def test_the_mechanism_control_redraws_its_pane(explorer):
    for key in ("lossy-zero", "broad-sanitiser", "grad-accumulation"):
        facts = change(explorer, "mechanism", key, pane="mechanism")
        assert facts["mechanism"] == key
    assert explorer.views["mechanism"].facts["weights"] is False
    assert "fits all" in explorer.notes["mechanism"].value


@pytest.mark.slow
def test_summary_and_timing(explorer):
    assert explorer.summary().startswith("console loss=")
    assert "fits all the evidence" in explorer.summary("mechanism")
    assert explorer.timing().startswith("accumulation: ")


@pytest.mark.parametrize("serialiser, written, read_back", [
    ("incident-sanitiser", '{"train_loss": [0.0]}', 0.0),  # the write-up's serialiser: inf saved as a loss of 0.0
    ("strict", None, math.inf),
])
def test_accumulation_view_follows_a_float16_overflow_into_the_file(serialiser, written, read_back):
    facts = accumulation_view(samples=10_000, batch_size=64, accumulator="float16", tracker="incident-broken",
                              serialiser=serialiser).facts
    assert facts["batches"] == 157 and facts["last_batch"] == 16
    assert facts["console"] == "loss=inf" and facts["overflow_batch"] is not None and facts["stall_batch"] is None
    assert facts["read_back"] == read_back and (written is None or facts["written"] == written)


def test_accumulation_view_of_wide_sums():
    settings = {"samples": 10_000, "batch_size": 64, "accumulator": "float64", "serialiser": "strict"}
    fixed, exact = (accumulation_view(tracker=t, **settings).facts for t in ("incident-fixed", "exact"))
    assert fixed["exact"] == exact["exact"] and fixed["read_back"] != exact["read_back"]
    assert fixed["error_pct"] != 0 and abs(fixed["error_pct"]) < 0.1  # a mean of batch means
    # float64 sums of float32 batch means (as loss.item() gives them): the exact per-sample mean to float32 rounding
    assert exact["read_back"] == pytest.approx(exact["exact"], rel=1e-7) and exact["overflow_batch"] is None


@pytest.mark.parametrize("key", [m.key for m in MECHANISMS])
def test_mechanism_view_for_every_case(key):
    view = mechanism_view(key)
    assert view.facts["mechanism"] == key and "cause" in view.html


@pytest.mark.parametrize("kwargs, message", [
    ({"tracker": "nope"}, "tracker='nope': unknown; allowed: incident-broken, incident-fixed, exact"),
    ({"accumulator": "auto"}, "accumulator='auto': unknown; allowed: python, float64"),
    ({"batch_size": 0}, "batch_size=0: must be a whole number from 1 to samples=1000"),
    ({"serialiser": "yaml"}, "serialiser='yaml': unknown"),
])
def test_accumulation_view_rejects_bad_values(kwargs, message):
    values = {"samples": 1000, "batch_size": 16, "accumulator": "float64", "tracker": "exact", "serialiser": "strict"}
    with pytest.raises(ValueError, match=message):
        accumulation_view(**{**values, **kwargs})


def test_the_mechanism_pane_says_which_evidence_a_case_fits():
    """read-after-reset fails only the assumed evidence: the pane says it fits the observed evidence, not all of it."""
    view = mechanism_view("read-after-reset")
    assert view.facts["fits"] is False and view.facts["fits_observed"] is True
    assert "fits the observed evidence</td><td><code>yes</code>" in view.html
