"""The doctor's reading of history files and console logs (``accumbug.doctor.history_files``, ``.consoles``).

The corpus in ``tests/doctor_corpus/files/`` holds files in each framework's own format: Keras'
``History.history`` saved with ``json.dump``, Hugging Face's ``trainer_state.json``, Lightning's
``CSVLogger`` ``metrics.csv``, this package's strict history files, and the consoles that print
them. Healthy files give no finding, each broken one its code, the incident's pair
``file-disagrees-with-console``; hostile inputs give ``UnusableInput`` and nothing else.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from accumbug.doctor import history_files
from accumbug.doctor.consoles import compare, looks_like_console, parse_console, read_console
from accumbug.doctor.findings import FINDING_CODES, UnusableInput
from accumbug.doctor.history_files import (
    MAX_BYTES,
    History,
    check_history,
    read_histories,
    read_history,
    read_text,
)

CORPUS = Path(__file__).resolve().parent / "doctor_corpus" / "files"

# file -> (kind, codes check_history gives)
HISTORIES = {
    "keras_history_healthy.json": ("keras", set()),
    "keras_history_nan.json": ("keras", {"invalid-json-tokens", "non-finite-values"}),
    "keras_history_zeroed_loss.json": ("keras", {"zeroed-history"}),
    "incident_history_reconstructed.json": ("json", set()),  # the loss alone
    "accumbug_history_healthy.json": ("json", set()),
    "accumbug_history_nonfinite.json": ("json", {"non-finite-values"}),
    "hf_trainer_state_healthy.json": ("hf-trainer-state", set()),
    "hf_trainer_state_nan_inf.json": ("hf-trainer-state", {"invalid-json-tokens", "non-finite-values"}),
    "lightning_metrics_healthy.csv": ("lightning-csv", set()),
    "lightning_metrics_inf.csv": ("lightning-csv", {"non-finite-values"}),
}
# console -> (epochs it shows, metrics of its first epoch)
CONSOLES = {
    "incident_console.log": ([1, 2, 3, 4], {"loss": 9.1621, "top1": 0.0, "top5": 0.2}),
    "accumbug_console.log": ([1, 2, 3], {"loss": 6.4193, "top1": 2.95, "top5": 9.09}),
    "tqdm_console.log": ([1, 2, 3], {"loss": 6.4193, "top1": 2.95}),
    "keras3_console.log": ([1, 2, 3, 4, 5], {"accuracy": 0.1523, "loss": 4.8812, "val_accuracy": 0.2201,
                                             "val_loss": 4.1012}),
    "keras2_console.log": ([1, 2, 3, 4, 5], {"accuracy": 0.1523, "loss": 4.8812, "val_accuracy": 0.2201,
                                             "val_loss": 4.1012}),
    "plain_console_spaces.log": ([1, 2, 3, 4, 5], {"loss": 4.881, "val_loss": 4.101}),
    "plain_console_equals.log": ([1, 2, 3, 4, 5], {"loss": 4.881, "accuracy": 0.152}),
    "plain_console_comma.log": ([1, 2, 3, 4, 5], {"train loss": 4.881, "val loss": 4.101, "val acc": 22.0}),
    "lightning_console.log": ([0, 1, 2], {"train_loss_step": 0.701, "val_loss": 0.642, "val_acc": 0.741,
                                          "train_loss_epoch": 0.784}),
    "hf_console.log": ([1, 2, 3], None),
}
# history, console that printed it, and a value to change in the file: (series, index, epoch as printed)
AGREEING = [
    ("keras_history_healthy.json", "keras3_console.log", ("loss", 1, 2)),
    ("keras_history_healthy.json", "keras2_console.log", ("val_accuracy", 4, 5)),
    ("keras_history_healthy.json", "plain_console_spaces.log", ("val_loss", 0, 1)),
    ("keras_history_healthy.json", "plain_console_equals.log", ("accuracy", 2, 3)),
    ("keras_history_healthy.json", "plain_console_comma.log", ("val_accuracy", 3, 4)),  # 55.1% vs 0.55078125
    ("accumbug_history_healthy.json", "accumbug_console.log", ("train_top5", 2, 3)),
    ("accumbug_history_healthy.json", "tqdm_console.log", ("train_loss", 0, 1)),
    ("hf_trainer_state_healthy.json", "hf_console.log", ("eval_loss", 1, 2)),
    ("lightning_metrics_healthy.csv", "lightning_console.log", ("train_loss_epoch", 1, 1)),
    ("lightning_metrics_healthy.csv", "lightning_console.log", ("val_acc", 2, 2)),
]


def test_the_corpus_is_complete():
    assert {p.name for p in CORPUS.iterdir()} == set(HISTORIES) | set(CONSOLES)


# -- histories ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", HISTORIES)
def test_each_history_is_recognised_by_its_content(name, tmp_path):
    kind, _ = HISTORIES[name]
    assert read_history(CORPUS / name).kind == kind
    renamed = tmp_path / "saved-without-an-extension"
    shutil.copyfile(CORPUS / name, renamed)
    assert read_history(renamed).kind == kind
    assert not looks_like_console((CORPUS / name).read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", HISTORIES)
def test_each_history_gives_its_findings_and_healthy_ones_none(name):
    history = read_history(CORPUS / name)
    findings = check_history(history)
    assert {f.code for f in findings} == HISTORIES[name][1]
    for finding in findings:
        assert finding.path == str(CORPUS / name) and finding.evidence and finding.consequence and finding.fix


def test_nan_tokens_are_read_and_counted():
    history = read_history(CORPUS / "keras_history_nan.json")
    assert history.invalid_tokens == ["NaN", "NaN", "NaN", "Infinity"]
    assert math.isnan(history.series["loss"][3]) and history.series["val_loss"][4] == math.inf
    tokens = next(f for f in check_history(history) if f.code == "invalid-json-tokens")
    assert "3 x NaN" in tokens.evidence and "1 x Infinity" in tokens.evidence and "jq" in tokens.consequence
    nonfinite = {f.evidence.split()[0]: f.evidence for f in check_history(history) if f.code == "non-finite-values"}
    assert set(nonfinite) == {"loss", "val_loss"} and "epoch 4: nan, epoch 5: inf" in nonfinite["val_loss"]


def test_a_trainer_state_keeps_each_value_with_its_step_and_epoch():
    history = read_history(CORPUS / "hf_trainer_state_nan_inf.json")
    assert history.steps["loss"] == [50, 100, 150, 200, 250, 300] and history.epochs["eval_loss"] == [1.0, 2.0, 3.0]
    assert history.series["grad_norm"][3] == math.inf and history.line_of["Infinity"] > 1
    evidence = [f.evidence for f in check_history(history) if f.code == "non-finite-values"]
    assert any("grad_norm" in e and "step 200 (epoch 2): inf" in e for e in evidence)


def test_a_strict_history_gets_its_nonfinite_values_back():
    history = read_history(CORPUS / "accumbug_history_nonfinite.json")
    loss = history.series["train_loss"]
    assert history.invalid_tokens == [] and loss[1] == math.inf and math.isnan(loss[2])


def test_the_zeroed_loss_names_what_shows_training_ran():
    finding, = check_history(read_history(CORPUS / "keras_history_zeroed_loss.json"))
    assert "loss is exactly 0.0 at all 3 points" in finding.evidence
    assert "accuracy changes" in finding.evidence
    assert "aliased-state" in finding.fix and "lossy-serialiser" in finding.fix


def test_a_zero_loss_with_nothing_beside_it_is_no_finding():
    assert check_history(History("h.json", "json", {"loss": [0.0, 0.0], "samples": [10, 10]})) == []
    assert [f.code for f in check_history(History("h.json", "json", {"loss": [0.0], "accuracy": [0.25]}))] == \
        ["zeroed-history"]


def test_a_csv_with_missing_cells_skips_them(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text("epoch,step,train_loss_step,val_loss\n0,9,0.9,\n0,9,,0.8\n1,19,0.7\n1,19,,\n", encoding="utf-8")
    history = read_history(path)
    assert history.series == {"train_loss_step": [0.9, 0.7], "val_loss": [0.8]}
    assert history.epochs == {"train_loss_step": [0.0, 1.0], "val_loss": [0.0]} and check_history(history) == []


# -- consoles ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", CONSOLES)
def test_each_console_is_read(name):
    epochs, first = CONSOLES[name]
    text = (CORPUS / name).read_text(encoding="utf-8")
    console = read_console(CORPUS / name)
    assert looks_like_console(text) and sorted(console.epochs) == epochs
    if first is not None:
        assert console.epochs[epochs[0]] == first
    with pytest.raises(UnusableInput):
        read_history(CORPUS / name)


def test_console_digits_and_percent_are_kept():
    console = read_console(CORPUS / "incident_console.log")
    assert console.digits == {"loss": 4, "top1": 2, "top5": 2} and console.percent == {"top1", "top5"}
    assert console.line_of == {1: 1, 2: 2, 3: 3, 4: 4}
    assert parse_console("Epoch 2/5\n3/3 - 0s - loss: 1.2345e-04\n").places == {2: {"loss": 8}}


def test_carriage_returns_keep_each_epochs_last_values():
    text = ("Epoch 1:  50%|#####     | 1/2 [00:00<00:00, loss=9.9000, top1=1.00%]\r"
            "Epoch 1: 100%|##########| 2/2 [00:00<00:00, loss=9.1621, top1=2.00%]\r\n")
    assert parse_console(text).epochs == {1: {"loss": 9.1621, "top1": 2.0}}


def test_each_tracker_of_a_tagged_console_is_kept_apart():
    console = parse_console("Epoch 1 [Train]: loss=2.0000, top1=1.00%  [exact]\n"
                            "Epoch 1 [Train]: loss=inf, top1=1.00%  [incident-broken:float16]\n")
    assert console.tracker == "exact" and set(console.trackers) == {"exact", "incident-broken:float16"}
    assert console.trackers["incident-broken:float16"].epochs[1]["loss"] == math.inf
    saved = History("run/history-exact.json", "accumbug-run", {"train_loss": [2.0]}, tracker="exact")
    assert compare(saved, console) == []
    saved.tracker = "incident-broken:float16"
    assert [f.code for f in compare(saved, console)] == ["file-disagrees-with-console"]


# -- history against console -------------------------------------------------------------------------


def test_the_incident_pair_disagrees_at_epochs_1_to_4():
    history = read_history(CORPUS / "incident_history_reconstructed.json")
    finding, = compare(history, read_console(CORPUS / "incident_console.log"))
    assert finding.code == "file-disagrees-with-console" and FINDING_CODES[finding.code].severity == "error"
    assert "epochs 1-4: console 9.1621, 8.7352, 8.2003, 7.5350; file 0.0, 0.0, 0.0, 0.0" in finding.evidence
    assert finding.evidence.startswith("train_loss") and "-100.0%" in finding.consequence


@pytest.mark.parametrize("history_name, console_name, change", AGREEING, ids=lambda v: str(v))
def test_a_file_that_agrees_gives_none_and_a_changed_value_is_found(history_name, console_name, change):
    history, console = read_history(CORPUS / history_name), read_console(CORPUS / console_name)
    assert compare(history, console) == []
    key, index, epoch = change
    history.series[key][index] *= 1.01
    finding, = compare(history, console)
    assert finding.evidence.startswith(key) and f"epoch {epoch}:" in finding.evidence


def test_nan_or_inf_against_a_printed_number_disagrees():
    console = parse_console("epoch 1 loss 2.500\nepoch 2 loss nan\nepoch 3 loss 2.100\n")
    history = History("h.json", "json", {"loss": [math.inf, math.nan, math.nan]})
    finding, = compare(history, console)
    assert "epochs 1, 3:" in finding.evidence and "not a finite number" in finding.consequence


def test_epochs_counted_from_0_align_with_epochs_counted_from_1():
    history = read_history(CORPUS / "keras_history_healthy.json")
    console = parse_console("".join(f"epoch {e} loss {v:.3f}\n" for e, v in enumerate(history.series["loss"])))
    assert compare(history, console) == []


def test_a_per_step_history_is_not_compared():
    history = History("trainer_state.json", "hf-trainer-state", {"loss": [2.0, 1.0]}, epochs={"loss": [0.5, 1.0]})
    assert compare(history, parse_console("epoch 1 loss 9.000\n")) == []


# -- a run folder ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    from accumbug.config import TrainConfig
    from accumbug.trackers import ExactTracker
    from accumbug.train import train

    out = tmp_path_factory.mktemp("doctor") / "run"
    train(TrainConfig(preset="tiny", epochs=2), [ExactTracker()], out=out)
    return out


def test_a_run_folder_gives_one_healthy_history_per_tracker(run_folder):
    found = read_histories(run_folder)
    assert [(h.kind, h.tracker) for h in found] == [("accumbug-run", "exact")]
    assert len(found[0].series["train_loss"]) == 2 and check_history(found[0]) == []
    console = read_console(next(run_folder.glob("epoch-*/console.log")))
    assert sorted(console.epochs) == [1, 2] and compare(found[0], console) == []


# -- hostile inputs ----------------------------------------------------------------------------------


HOSTILE = {
    "empty.json": (b"", "empty file"),
    "truncated.json": (b'{"loss": [9.1621, 8.73', "truncated JSON at line 1 column"),
    "binary.json": (b"PK\x03\x04\x00\x00" + bytes(range(256)), "binary content"),
    "latin1.json": ('{"loss": [1.0], "d\xe9j\xe0": [2.0]}'.encode("latin-1"), "not UTF-8"),
    "nested.json": (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    "nested-objects.json": (b'{"a":' * 100_000 + b"1" + b"}" * 100_000, "nested too deeply"),
    "huge-integer.json": (b'{"loss": [' + b"9" * 5000 + b"]}", "cannot read"),
    "not-a-history.json": (b'{"name": "run", "seed": 1}', "is JSON but not a history the doctor knows"),
    "bad-cell.csv": (b"epoch,step,loss\n0,1,abc\n", "line 2, column loss"),
    "notes.txt": (b"nothing to see\n", "not a history the doctor knows"),
}


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_inputs_give_a_named_refusal(name, tmp_path):
    content, message = HOSTILE[name]
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(UnusableInput, match=message) as refused:
        read_histories(path)
    assert str(path) in str(refused.value) and "\n" not in str(refused.value)
    with pytest.raises(UnusableInput):
        read_console(path)


def test_missing_paths_folders_and_unreadable_files_are_refused(tmp_path, monkeypatch):
    with pytest.raises(UnusableInput, match="no such file"):
        read_histories(tmp_path / "missing.json")
    with pytest.raises(UnusableInput, match="not an accumbug run folder"):
        read_histories(tmp_path)
    with pytest.raises(UnusableInput, match="a folder, not a file"):
        read_console(tmp_path)
    path = tmp_path / "history.json"
    path.write_text('{"loss": [1.0]}', encoding="utf-8")

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(history_files, "open", refuse, raising=False)  # as root, chmod 000 would not stop it
    with pytest.raises(UnusableInput, match="cannot read it \\(Permission denied\\)"):
        read_histories(path)


def test_a_200_mb_file_is_refused_by_its_size_before_reading(tmp_path, monkeypatch):
    path = tmp_path / "huge.json"
    with open(path, "wb") as handle:
        handle.truncate(200 * 1024 * 1024)  # sparse: no 200 MB written
    monkeypatch.setattr(history_files, "open", lambda *a, **k: pytest.fail("opened a file over the limit"),
                        raising=False)
    for read in (read_histories, read_console, read_text):  # the time it takes: benchmarks/bench_doctor_reads.py
        with pytest.raises(UnusableInput, match=f"209,715,200 bytes .*limit of {MAX_BYTES:,} bytes"):
            read(path)


def test_100_history_files_read_in_a_row_each_give_their_own_findings(tmp_path):
    """Nothing carries over from one file to the next (the time it takes: benchmarks/bench_doctor_reads.py)."""
    names = list(HISTORIES)
    alone = {name: [(f.code, f.line) for h in read_histories(CORPUS / name) for f in check_history(h)]
             for name in names}
    for index in range(100):
        shutil.copyfile(CORPUS / names[index % len(names)], tmp_path / f"h{index:03d}")
    for index in range(100):
        found = [(f.code, f.line) for h in read_histories(tmp_path / f"h{index:03d}") for f in check_history(h)]
        assert found == alone[names[index % len(names)]], f"h{index:03d}"


def test_a_large_nan_history_is_read_within_the_limits(tmp_path):
    path = tmp_path / "long.json"
    path.write_text(json.dumps({"loss": [math.nan] * 200_000, "accuracy": [0.5] * 200_000}), encoding="utf-8")
    history = read_history(path)  # the time it takes, and how it grows with the length: bench_doctor_reads.py
    assert len(history.invalid_tokens) == 200_000


@pytest.mark.parametrize("line", ["65/65 ━━━━━━━━━━━━━━━━━━━━ 0s 1ms/step - loss: 0.9785",
                                  "65/65 [==============================] - 0s 1ms/step - loss: 0.9785"])
def test_a_single_epoch_keras_log_without_a_header_is_epoch_1(line):
    console = parse_console(f"{line[:5]} ━━━━ 0s - loss: 1.5\r{line}\n")
    assert console.epochs == {1: {"loss": 0.9785}}
