"""The doctor's corpus files hold numbers that can occur, and the incident's files hold what the write-up showed.

Top-5 accuracy counts every sample that top-1 counts, so it is never below it: checked per epoch
(or logged step) in every history and console log of ``tests/doctor_corpus/files``, for every pair of
series whose names differ only in ``top1``/``top5``. The incident's console log is the write-up's,
verbatim (``lessons.incident.INCIDENT_CONSOLE_LOG``). Its history file is reconstructed, and its
name says so: the write-up shows only the saved loss (``INCIDENT_SAVED_LINE``), so the file holds
that and nothing the write-up did not report.
"""

import re
from pathlib import Path

import pytest

from accumbug.doctor.consoles import read_console
from accumbug.doctor.history_files import read_histories
from accumbug.lessons.incident import INCIDENT_CONSOLE_LOG, INCIDENT_SAVED_LINE

FILES = Path(__file__).resolve().parent / "doctor_corpus" / "files"
CONSOLES = sorted(FILES.glob("*.log"))
HISTORIES = sorted(p for p in FILES.iterdir() if p.suffix in (".json", ".csv"))


def top_pairs(series: dict[str, list[float]]) -> list[tuple[str, list[float], list[float]]]:
    """Each ``top1`` series with the ``top5`` series of the same name otherwise."""
    return [(name, values, series[name.replace("top1", "top5")]) for name, values in series.items()
            if "top1" in name and name.replace("top1", "top5") in series]


def below(top1: list[float], top5: list[float]) -> list[tuple[int, float, float]]:
    return [(index, one, five) for index, (one, five) in enumerate(zip(top1, top5)) if five < one]


def test_the_corpus_has_files_with_both_accuracies():
    """So the checks below check something: histories and consoles that hold top-1 and top-5 side by side."""
    assert any(top_pairs(h.series) for path in HISTORIES for h in read_histories(path))
    assert any(top_pairs({key: [value] for key, value in metrics.items()})
               for path in CONSOLES for metrics in read_console(path).epochs.values())


@pytest.mark.parametrize("path", HISTORIES, ids=lambda p: p.name)
def test_no_history_has_top5_below_top1(path):
    for history in read_histories(path):
        for name, top1, top5 in top_pairs(history.series):
            assert len(top1) == len(top5) and not below(top1, top5), (path.name, name, below(top1, top5))


@pytest.mark.parametrize("path", CONSOLES, ids=lambda p: p.name)
def test_no_console_has_top5_below_top1(path):
    for epoch, metrics in read_console(path).epochs.items():
        for name, (top1,), (top5,) in top_pairs({key: [value] for key, value in metrics.items()}):
            assert top5 >= top1, (path.name, epoch, name, top1, top5)


def test_the_incident_console_is_the_write_ups_own():
    assert (FILES / "incident_console.log").read_text(encoding="utf-8") == "\n".join(INCIDENT_CONSOLE_LOG) + "\n"


def test_the_incident_history_is_labelled_reconstructed_and_holds_only_what_the_write_up_shows():
    assert sorted(p.name for p in FILES.glob("incident_*")) == ["incident_console.log",
                                                                 "incident_history_reconstructed.json"]
    shown = [float(value) for value in re.findall(r"\d+\.\d+", INCIDENT_SAVED_LINE)]
    history, = read_histories(FILES / "incident_history_reconstructed.json")
    assert history.series == {"train_loss": shown} and len(shown) == len(INCIDENT_CONSOLE_LOG)
