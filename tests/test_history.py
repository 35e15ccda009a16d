import json
import math
import os

import pytest

from accumbug.history import (
    HistoryFileError,
    atomic_write_text,
    dumps_history,
    load_history,
    loads_history,
    loads_strict,
    read_back,
    save_history,
    strict_parse_ok,
)
from accumbug.specimens.serialisers import incident_lossy_dumps

HISTORY = {
    "tracker": "incident-broken:float16",
    "train_loss": [9.162109375, math.inf, math.nan, -math.inf, 0.1 + 0.2, 5e-324, 1.7976931348623157e308],
    "train_total": [136312, 136312],
    "nested": {"a/b~c": [math.nan]},
}


def same(a, b):
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def test_round_trip_is_exact_for_nonfinite_and_ordinary_floats(tmp_path):
    path = tmp_path / "history.json"
    save_history(path, HISTORY)
    assert same(load_history(path), HISTORY)
    loaded = load_history(path)["train_loss"]
    assert loaded[1] == math.inf and loaded[3] == -math.inf and math.isnan(loaded[2])
    assert [x.hex() for x in loaded if math.isfinite(x)] == [x.hex() for x in HISTORY["train_loss"] if math.isfinite(x)]


def test_files_are_strict_json(tmp_path):
    path = tmp_path / "history.json"
    save_history(path, HISTORY)
    text = path.read_text()
    document = loads_strict(text)  # raises on NaN / Infinity tokens
    assert "NaN" not in text and "Infinity" not in text
    assert document["train_loss"][1] is None
    assert document["nonfinite"] == {"/train_loss/1": "inf", "/train_loss/2": "nan", "/train_loss/3": "-inf",
                                     "/nested/a~1b~0c/0": "nan"}


def test_pythons_json_is_not_strict():
    with pytest.raises(ValueError, match="NaN is not valid JSON"):
        loads_strict(json.dumps([math.nan]))


def test_incident_serialiser_turns_nonfinite_into_zero():
    saved = json.loads(incident_lossy_dumps(HISTORY))
    assert saved["train_loss"][1:4] == [0.0, 0.0, 0.0] and saved["train_loss"][0] == 9.162109375


@pytest.mark.parametrize("step", ["fsync", "replace"])
def test_an_interrupted_write_leaves_the_previous_file(tmp_path, monkeypatch, step):
    path = tmp_path / "history.json"
    save_history(path, {"train_loss": [1.0]})
    before = path.read_bytes()

    def crash(*args, **kwargs):
        raise OSError("disk gone")

    monkeypatch.setattr(os, step, crash)
    with pytest.raises(OSError, match="disk gone"):
        save_history(path, {"train_loss": [1.0, 2.0]})
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["history.json"]  # no temporary file left


def test_written_files_follow_the_umask(tmp_path):
    atomic_write_text(tmp_path / "x.txt", "x")
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "x.txt").stat().st_mode & 0o777 == 0o666 & ~mask


@pytest.mark.parametrize("text, message", [
    ('{"format": "accumbug-history/1", "x": NaN, "nonfinite": {}}', "not a strict JSON history file"),
    ('{"format": "accumbug-history/1", "x": [1.0', "not a strict JSON history file"),
    ('{"x": 1}', "not an accumbug-history/1 file"),
    ('{"format": "accumbug-history/1", "x": 1.0, "nonfinite": {"/x": "inf"}}', "not null"),
    ('{"format": "accumbug-history/1", "x": null, "nonfinite": {"/y/0": "inf"}}', "names no value"),
    ('{"format": "accumbug-history/1", "x": null, "nonfinite": {"/x": "big"}}', "expected one of nan, inf, -inf"),
])
def test_corrupt_files_are_clear_errors(tmp_path, text, message):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(HistoryFileError, match=message):
        load_history(path)


def test_dumps_is_deterministic():
    assert dumps_history(HISTORY) == dumps_history(dict(HISTORY))


def test_read_back_decodes_the_strict_format_and_reads_other_writers_as_python_does():
    strict = dumps_history(HISTORY)
    assert same(read_back(strict), HISTORY) and same(loads_history(strict), HISTORY)
    assert strict_parse_ok(strict)
    python_json = json.dumps({"train_loss": [math.nan, 1.0]})  # what json.dump(history) writes
    assert not strict_parse_ok(python_json)
    assert math.isnan(read_back(python_json)["train_loss"][0])
    assert read_back(incident_lossy_dumps({"train_loss": [math.nan, 1.0]})) == {"train_loss": [0.0, 1.0]}
