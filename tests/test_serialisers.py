import json
import math

import pytest
import torch

from accumbug.history import load_history, read_back, save_history, strict_parse_ok
from accumbug.specimens.serialisers import SERIALISERS, to_python, write

NONFINITE = {"train_loss": [math.nan, math.inf, -math.inf, 9.1621]}


def test_strict_writer_is_strict_and_lossless():
    text = write(NONFINITE, "strict")
    back = read_back(text)["train_loss"]
    assert strict_parse_ok(text) and math.isnan(back[0]) and back[1:] == [math.inf, -math.inf, 9.1621]


def test_pythons_json_writes_tokens_that_strict_parsers_reject():
    text = write(NONFINITE, "python-json")
    assert "NaN" in text and "Infinity" in text and not strict_parse_ok(text)
    assert read_back(text)["train_loss"][1] == math.inf  # Python itself reads them back


def test_a_strict_encoder_refuses():
    with pytest.raises(ValueError, match="Out of range float values are not JSON compliant"):
        write(NONFINITE, "json-strict")


@pytest.mark.parametrize("name", ["incident-sanitiser", "broad-sanitiser"])
def test_sanitisers_write_zero(name):
    assert read_back(write(NONFINITE, name))["train_loss"] == [0.0, 0.0, 0.0, 9.1621]


def test_nan_to_num_maps_inf_to_the_largest_float():
    assert read_back(write(NONFINITE, "nan_to_num"))["train_loss"] == [0.0, 1.7976931348623157e308,
                                                                      -1.7976931348623157e308, 9.1621]


def test_only_the_broad_sanitiser_zeroes_a_finite_tensor():
    history = {"train_loss": [torch.tensor(9.1621, dtype=torch.float64)], "tracker": "x", "train_total": [16]}
    for name in SERIALISERS:
        if name == "broad-sanitiser":
            assert read_back(write(history, name)) == {"train_loss": [0.0], "tracker": "x", "train_total": [16]}
        else:
            assert read_back(write(history, name))["train_loss"] == [9.1621]


def test_to_python_converts_tensors_and_keeps_the_rest():
    assert to_python({"a": [torch.tensor(2.5), 3, "s", None]}) == {"a": [2.5, 3, "s", None]}


def test_read_back_reads_the_packages_own_files(tmp_path):
    save_history(tmp_path / "h.json", NONFINITE)
    assert json.dumps(read_back((tmp_path / "h.json").read_text()), allow_nan=True) == \
        json.dumps(load_history(tmp_path / "h.json"), allow_nan=True)


def test_unknown_serialiser_is_a_clear_error():
    with pytest.raises(ValueError, match="serialiser='yaml': unknown; allowed: strict, python-json"):
        write({}, "yaml")
