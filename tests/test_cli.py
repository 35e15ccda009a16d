import json
import subprocess
import sys

import pytest
import torch

from accumbug import registry
from accumbug.cli import REPRODUCE_TRACKERS, _parser, main
from accumbug.data import preset
from accumbug.history import load_history
from accumbug.lessons.symptom import symptom_trackers
from accumbug.model import SmallClassifier
from accumbug.runfolder import CHECKPOINT, RunFolder, history_filename
from accumbug.seeding import seed_everything
from accumbug.specimens.incident_trackers import ACCUMULATORS
from accumbug.trackers import ExactTracker


def test_reproduce_prints_the_table_and_writes_the_folder_and_figure(tmp_path, capsys):
    out = tmp_path / "repro"
    assert main(["reproduce", "--preset", "tiny", "--epochs", "1", "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "incident's JSON" in printed and "strict JSON" in printed
    assert printed.index("The incident's evidence, reproduced") < printed.index("The accumulators")
    folder = RunFolder(out)
    symptom = [t.name for t in symptom_trackers()[0]]
    assert folder.trackers == [*REPRODUCE_TRACKERS, *symptom] and folder.epochs == 1
    for name in symptom:  # the incident's own save, beside the run's strict history of the same tracker
        saved = json.loads((out / f"incident-history-{name.replace(':', '-')}.json").read_text())
        assert saved["train_loss"] == [0.0] and saved["train_top5"][0] > 0
        assert load_history(folder.history_path(name))["train_loss"][0] > 0
    for name in REPRODUCE_TRACKERS:
        assert folder.history_path(name).name == history_filename(name) and folder.history_path(name).is_file()
        assert name in printed
    folder.verify()
    png = (out / "divergence.png").read_bytes()
    assert png.startswith(b"\x89PNG") and b"Software" not in png


def test_run_with_chosen_trackers(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["run", "--preset", "tiny", "--samples", "256", "--epochs", "1", "--out", str(out), "--no-progress",
                 "--tracker", "exact", "--tracker", "incident-fixed:bfloat16"])
    assert code == 0
    folder = RunFolder(out)
    assert folder.trackers == ["exact", "incident-fixed:bfloat16"]
    assert sorted(p.name for p in folder.file_path(CHECKPOINT).parent.glob("history-*")) == [
        "history-exact.json", "history-incident-fixed-bfloat16.json"]


def test_python_dash_m_entry_point(tmp_path):
    done = subprocess.run([sys.executable, "-m", "accumbug", "run", "--preset", "tiny", "--epochs", "0"],
                          capture_output=True, text=True, cwd=tmp_path, check=False)
    assert done.returncode == 2 and "--epochs: 0 is below the minimum of 1" in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_eval_only_measures_the_seeded_model_without_changing_it(tmp_path, capsys):
    out = tmp_path / "eval"
    assert main(["run", "--preset", "tiny", "--samples", "256", "--epochs", "2", "--eval-only", "--tracker", "exact",
                 "--out", str(out), "--no-progress"]) == 0
    assert "Epoch 2 [Eval]: loss=" in capsys.readouterr().out
    folder = RunFolder(out)
    assert folder.phase == "eval"
    history = load_history(folder.history_path("exact"))
    assert "train_loss" not in history and history["eval_total"] == [256, 256]
    assert history["eval_top1"][0] == history["eval_top1"][1]  # the same model in another order
    assert abs(history["eval_loss"][0] / history["eval_loss"][1] - 1) < 1e-6
    saved = folder.checkpoint()["model"]
    seed_everything(0)
    seeded = SmallClassifier(preset("tiny").pixels, preset("tiny").classes).state_dict()
    assert all(torch.equal(saved[name], seeded[name]) for name in seeded)


def _tracker_help() -> str:
    run = next(action for action in _parser()._subparsers._group_actions).choices["run"]
    return next(action.help for action in run._actions if action.dest == "trackers")


def _unknown_tracker_message() -> str:
    with pytest.raises(ValueError, match="tracker='nope': unknown; allowed: ") as raised:
        registry.make_tracker("nope")
    return str(raised.value)


def test_the_allowed_trackers_are_listed_once_in_the_registry(monkeypatch):
    """``--tracker``'s help and ``make_tracker``'s error both render ``TRACKER_KINDS``, ``ACCUMULATORS``."""
    for text in (_tracker_help(), _unknown_tracker_message()):
        assert registry.tracker_names_help() in text and all(a in text for a in ACCUMULATORS)
        assert all(kind in text for kind in registry.TRACKER_KINDS)  # the symptom's kinds too
    monkeypatch.setitem(registry.TRACKER_KINDS, "added-kind", ExactTracker)
    assert "added-kind" in _tracker_help() and "added-kind" in _unknown_tracker_message()
