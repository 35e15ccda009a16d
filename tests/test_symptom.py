"""The incident's symptom from a trained run.

Console real, saved file zeros, the write-up's fix no help, float() the fix.
"""

import json
import math

import pytest
import torch

from accumbug.config import TrainConfig
from accumbug.history import read_back
from accumbug.lessons.plots import figure_png, plot_symptom
from accumbug.lessons.symptom import (
    BEYOND_THE_WRITE_UP,
    CODE_PATHS,
    SYMPTOMS,
    format_departures,
    format_symptom,
    format_symptom_verdicts,
    incident_files,
    symptom_rows,
    symptom_trackers,
    symptom_verdicts,
)
from accumbug.registry import make_tracker
from accumbug.specimens.gallery_trackers import InPlaceMeanTracker
from accumbug.specimens.incident_log import IncidentLog
from accumbug.trackers import ExactTracker
from accumbug.train import train

CONFIG = TrainConfig(preset="tiny", epochs=2)


@pytest.fixture(scope="module")
def symptom_run():
    trackers, log = symptom_trackers()
    return train(CONFIG, [ExactTracker(), *trackers], epoch_hook=log), log


def test_every_mechanism_has_three_rows_in_order(symptom_run):
    rows = symptom_rows(*symptom_run)
    assert [(r["mechanism"], r["code"]) for r in rows] == [(m, c) for m in SYMPTOMS for c in CODE_PATHS]


def test_the_evidence_reproduced_console_real_file_zero_accuracies_saved(symptom_run):
    for row in symptom_rows(*symptom_run):
        assert all(math.isfinite(c) and abs(c - e) <= 0.02 * e for c, e in zip(row["console"], row["exact"]))
        assert all(v > 0 for v in row["saved_top1"] + row["saved_top5"])
        if row["code"] == "working fix":
            assert row["saved"] == pytest.approx(row["exact"], rel=1e-6)
            assert [round(v, 4) for v in row["saved"]] == row["console"]
        else:
            assert row["saved"] == [0.0] * CONFIG.epochs


def test_the_incident_code_prints_the_exact_loss_and_the_fix_does_not(symptom_run):
    rows = {(r["mechanism"], r["code"]): r for r in symptom_rows(*symptom_run)}
    for mechanism in SYMPTOMS:
        exact = [round(v, 4) for v in rows[mechanism, "incident's code"]["exact"]]
        assert rows[mechanism, "incident's code"]["console"] == pytest.approx(exact, abs=2e-4)
        assert rows[mechanism, "write-up's fix"]["console"] != exact  # a mean of batch means: tiny's last batch is 8


def test_incident_files_are_what_the_log_saved(symptom_run):
    _, log = symptom_run
    files = incident_files(log)
    assert sorted(files) == sorted(f"incident-history-{n.replace(':', '-')}.json" for n in log.histories)
    for name in log.histories:
        assert read_back(files[f"incident-history-{name.replace(':', '-')}.json"].decode())["train_loss"] == [0.0, 0.0]


def test_format_symptom_shows_zeros_and_the_values(symptom_run):
    text = format_symptom(symptom_rows(*symptom_run))
    assert text.count("[0.0000, 0.0000]") == 2 * len(SYMPTOMS)
    assert all(code in text for code in CODE_PATHS)


class _Recorder:
    name, resets = "rec", 0

    def reset(self):
        self.resets += 1


def test_plot_symptom_draws_every_row_where_its_mechanism_and_code_path_say(symptom_run):
    rows = symptom_rows(*symptom_run)
    figure = plot_symptom(rows, "symptom")
    axes = figure.axes
    assert len(axes) == len(SYMPTOMS) * len(CODE_PATHS)
    assert [axis.get_title() for axis in axes[:len(CODE_PATHS)]] == list(CODE_PATHS)
    for row in rows:
        for key in ("exact", "console", "saved"):
            drawn = [line for axis in axes for line in axis.get_lines()
                     if line.get_gid() == f"{row['mechanism']} {row['code']} {key}"]
            assert len(drawn) == 1 and list(drawn[0].get_ydata()) == row[key]
    bottom = axes[0].get_ylim()[0]
    assert bottom < 0  # a saved 0.0 sits above the bottom edge, not on it
    assert figure_png(figure)[:8] == b"\x89PNG\r\n\x1a\n"


def test_incident_log_appends_values_as_returned_then_resets():
    log, tracker, buffer = IncidentLog({"rec": "python-json"}), _Recorder(), torch.tensor(2.5)
    log(1, tracker, {"loss": buffer, "top1": 1.0, "top5": 2.0})
    assert log.histories["rec"]["train_loss"][0] is buffer and tracker.resets == 1
    buffer.zero_()  # what a reset in place does to the tracker's own buffer
    assert read_back(log.saved("rec"))["train_loss"] == [0.0]
    other = _Recorder()
    other.name = "other"
    log(1, other, {"loss": 1.0, "top1": 0.0, "top5": 0.0})  # not named: left alone
    assert other.resets == 0 and "other" not in log.histories


def test_incident_log_rejects_unknown_writers_and_names():
    with pytest.raises(ValueError, match=r"writers\['x'\]='yaml': unknown; allowed: strict"):
        IncidentLog({"x": "yaml"})
    with pytest.raises(ValueError, match="name='y': no history; kept for x"):
        IncidentLog({"x": "strict"}).saved("y")


def test_the_trainer_history_keeps_values_a_tracker_later_zeroes():
    tracker = InPlaceMeanTracker()
    result = train(TrainConfig(preset="tiny", epochs=1), [tracker], epoch_hook=IncidentLog({tracker.name: "strict"}))
    assert float(tracker.mean) == 0.0  # the log reset it after the epoch
    assert result.histories[tracker.name]["train_loss"][0] == pytest.approx(result.console[tracker.name][0]["loss"],
                                                                            abs=5e-5)


def test_symptom_trackers_come_from_the_registry_by_name():
    for tracker in symptom_trackers()[0]:
        assert type(make_tracker(tracker.name)) is type(tracker)
    with pytest.raises(ValueError, match="tensor-loss always accumulates in float64; write 'tensor-loss:float64'"):
        make_tracker("tensor-loss:float16")


def test_symptom_verdicts_say_what_each_code_path_saved(symptom_run):
    for row in symptom_rows(*symptom_run):
        verdicts = symptom_verdicts(row)
        working = row["code"] == "working fix"
        assert verdicts == {"console real": True, "saved loss all 0.0": not working, "saved accuracies non-zero": True,
                            "saved = console": working, "saved = exact": working}
    table = format_symptom_verdicts(symptom_rows(*symptom_run))
    assert table.splitlines()[0].split()[:2] == ["mechanism", "code"] and table.count(" yes") == 4 * 3 + 2 * 4


def test_symptom_verdicts_notice_a_console_that_is_not_real():
    row = {"console": [float("inf")], "saved": [0.0], "exact": [9.0], "saved_top1": [1.0], "saved_top5": [0.0]}
    assert symptom_verdicts(row) == {"console real": False, "saved loss all 0.0": True,
                                     "saved accuracies non-zero": False, "saved = console": False,
                                     "saved = exact": False}


def _one_batch(tracker):
    outputs, labels = torch.randn(4, 8), torch.tensor([0, 1, 2, 3])
    tracker.update(torch.nn.functional.cross_entropy(outputs, labels), outputs, labels)
    return tracker.get_metrics()["loss"]


def test_departures_name_each_mechanism_and_what_they_say_holds():
    """The write-up's tracker returns a float that json.dumps writes; each case that fits needs a tensor."""
    assert list(BEYOND_THE_WRITE_UP) == list(SYMPTOMS)
    table = format_departures()
    assert [line.split()[0] for line in table.splitlines()[2:] if line[:1].strip()] == list(SYMPTOMS)
    assert "TypeError" in table
    assert isinstance(_one_batch(make_tracker("incident-broken:python")), float)
    for broken, fixed, _ in SYMPTOMS.values():
        for cls in (broken, fixed):
            loss = _one_batch(cls())
            assert isinstance(loss, torch.Tensor) and loss.dtype == torch.float64
            with pytest.raises(TypeError, match="not JSON serializable"):
                json.dumps({"train_loss": [loss]})

