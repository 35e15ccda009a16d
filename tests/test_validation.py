"""The value checks (``accumbug.validation``) and every entry point that uses them.

NumPy scalars are numbers: accepted, and kept as the Python numbers they are, so a run's
``config.json`` is the same whichever kind was passed. Bools are refused where a number is
asked for. A bad value's message is ``name=value: problem; allowed: ...``, as before.
"""

import json
import math
import random
from dataclasses import asdict

import numpy as np
import pytest
import torch

from accumbug.config import AMP_MODES, SCHEDULES, TrainConfig
from accumbug.data import PRESETS, DataSpec, preset
from accumbug.distributed import torchrun_command
from accumbug.lessons.wild.data import uneven_data
from accumbug.registry import make_trackers
from accumbug.runfolder import RunFolder
from accumbug.seeding import seed_everything
from accumbug.train import train
from accumbug.validation import check_choice, check_flag, check_real, check_whole

INTEGERS = [np.int64, np.int32, np.int16, np.uint8]
FLOATS = [np.float64, np.float32]


# -- the checks themselves ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", [int, *INTEGERS])
def test_check_whole_takes_every_integer_and_gives_a_python_int(kind):
    value = check_whole("epochs", kind(3), 1)
    assert value == 3 and type(value) is int


@pytest.mark.parametrize("value, message", [
    (0, "epochs=0: must be a whole number >= 1"),
    (np.int64(0), "epochs=0: must be a whole number >= 1"),  # the number, not its NumPy repr
    (True, "epochs=True: must be a whole number >= 1"),
    (np.bool_(True), "epochs=np.True_: must be a whole number >= 1"),
    (2.0, "epochs=2.0: must be a whole number >= 1"),
    (np.float64(2.0), "epochs=np.float64(2.0): must be a whole number >= 1"),
    ("3", "epochs='3': must be a whole number >= 1"),
    (None, "epochs=None: must be a whole number >= 1"),
])
def test_check_whole_refuses(value, message):
    with pytest.raises(ValueError) as refused:
        check_whole("epochs", value, 1)
    assert str(refused.value) == message


def test_check_whole_bounds_in_words():
    with pytest.raises(ValueError, match=r"^clusters=2\.5: must be a whole number$"):
        check_whole("clusters", 2.5)
    with pytest.raises(ValueError, match="^batch_size=11: must be a whole number from 1 to samples=10$"):
        check_whole("batch_size", 11, 1, 10, maximum_name="samples")
    with pytest.raises(ValueError, match="^world=0: must be a whole number of ranks >= 1$"):
        check_whole("world", 0, 1, unit="of ranks")
    assert check_whole("batch_size", np.int64(10), 1, 10) == 10


@pytest.mark.parametrize("kind", [float, *FLOATS])
def test_check_real_takes_every_float_and_gives_a_python_float(kind):
    value = check_real("lr", kind(0.5), 0, low_open=True)
    assert value == 0.5 and type(value) is float


def test_check_real_keeps_an_integer_an_integer():
    """``lr=1`` is recorded as given (config.json unchanged); a NumPy integer as the Python int it is."""
    assert type(check_real("lr", 1, 0, low_open=True)) is int
    assert type(check_real("lr", np.int64(1), 0, low_open=True)) is int


@pytest.mark.parametrize("value, bounds, message", [
    (0.0, {"low": 0, "low_open": True}, "lr=0.0: must be a finite number > 0"),
    (math.nan, {"low": 0, "low_open": True}, "lr=nan: must be a finite number > 0"),
    (np.float32("nan"), {"low": 0, "low_open": True}, "lr=nan: must be a finite number > 0"),
    (math.inf, {"low": 0}, "lr=inf: must be a finite number >= 0"),
    (-1.0, {"low": 0}, "lr=-1.0: must be a finite number >= 0"),
    (True, {"low": 0}, "lr=True: must be a finite number >= 0"),
    ("0.1", {"low": 0}, "lr='0.1': must be a finite number >= 0"),
    (1.0, {"low": 0, "high": 1, "high_open": True}, "lr=1.0: must be in [0, 1)"),
    (math.nan, {"low": 0, "high": 1, "high_open": True}, "lr=nan: must be in [0, 1)"),
    (math.nan, {"finite": False}, "lr=nan: must be a number"),
])
def test_check_real_refuses(value, bounds, message):
    with pytest.raises(ValueError) as refused:
        check_real("lr", value, **bounds)
    assert str(refused.value) == message


def test_check_real_takes_infinity_when_asked():
    assert check_real("tail", math.inf, 0, finite=False) == math.inf


def test_check_choice_lists_the_registry_it_is_given():
    assert check_choice("amp", "off", AMP_MODES) == "off"
    with pytest.raises(ValueError, match="^preset='huge': unknown; allowed: tiny, small, full$"):
        check_choice("preset", "huge", PRESETS)  # a dict: its keys
    with pytest.raises(ValueError, match=r"^preset=\['tiny'\]: unknown; allowed: tiny, small, full$"):
        check_choice("preset", ["tiny"], SCHEDULES)


# -- the entry points -----------------------------------------------------------------------------------


@pytest.mark.parametrize("integer", INTEGERS[:2])
@pytest.mark.parametrize("real", FLOATS)
def test_train_config_takes_numpy_numbers_and_keeps_python_ones(integer, real):
    config = TrainConfig(preset="tiny", epochs=integer(2), seed=integer(3), lr=real(0.25), momentum=real(0.5),
                         hidden=integer(8), warmup_from=real(0.125), warmup_epochs=integer(1),
                         samples=integer(256), classes=integer(16), batch_size=integer(32))
    plain = TrainConfig(preset="tiny", epochs=2, seed=3, lr=0.25, momentum=0.5, hidden=8, warmup_from=0.125,
                        warmup_epochs=1, samples=256, classes=16, batch_size=32)
    assert config == plain
    assert json.dumps(asdict(config)) == json.dumps(asdict(plain))  # json.dumps of a NumPy integer fails
    assert all(type(getattr(config, name)) is type(getattr(plain, name)) for name in asdict(plain))


@pytest.mark.parametrize("name", ["epochs", "seed", "hidden", "samples", "classes", "batch_size"])
def test_train_config_refuses_a_bool_for_a_whole_number(name):
    with pytest.raises(ValueError, match=f"^{name}=True: must be a whole number"):
        TrainConfig(preset="tiny", **{name: True})


@pytest.mark.parametrize("name", ["progress", "stop_on_nonfinite", "eval_only"])
@pytest.mark.parametrize("value", [1, "yes", None])
def test_train_config_takes_only_true_or_false_for_a_switch(name, value):
    with pytest.raises(ValueError, match=f"^{name}={value!r}: must be True or False$"):
        TrainConfig(preset="tiny", **{name: value})
    config = TrainConfig(preset="tiny", **{name: np.bool_(True)})
    assert getattr(config, name) is True


def test_check_flag_gives_a_python_bool():
    assert check_flag("x", np.bool_(False)) is False and check_flag("x", True) is True
    with pytest.raises(ValueError, match=r"^x=0: must be True or False$"):
        check_flag("x", 0)


@pytest.mark.parametrize("name", ["lr", "momentum", "warmup_from", "warmup_epochs"])
def test_train_config_refuses_a_bool_for_a_real_number(name):
    with pytest.raises(ValueError, match=f"^{name}=False: must be "):
        TrainConfig(preset="tiny", **{name: False})


@pytest.mark.parametrize("kwargs, message", [
    ({"seed": -1}, "seed=-1: must be a whole number >= 0"),
    ({"hidden": 0}, "hidden=0: must be a whole number >= 1"),
    ({"momentum": 1.0}, "momentum=1.0: must be in [0, 1)"),
    ({"momentum": np.float64(-0.5)}, "momentum=-0.5: must be in [0, 1)"),
    ({"lr": np.float32(0)}, "lr=0.0: must be a finite number > 0"),
    ({"epochs": np.int64(0)}, "epochs=0: must be a whole number >= 1"),
    ({"amp": "int8"}, "amp='int8': unknown; allowed: off, float16, bfloat16"),
    ({"preset": "huge"}, "preset='huge': unknown; allowed: tiny, small, full"),
    ({"batch_size": np.int64(0)}, "batch_size=0: must be between 1 and samples=13624"),
])
def test_train_config_messages(kwargs, message):
    with pytest.raises(ValueError) as refused:
        TrainConfig(**kwargs)
    assert str(refused.value) == message


def test_a_run_made_with_numpy_numbers_writes_the_same_config(tmp_path):
    made = {}
    for name, kind in (("plain", int), ("numpy", np.int64)):
        config = TrainConfig(preset="tiny", epochs=kind(1), seed=kind(0), samples=kind(64), classes=kind(8))
        train(config, make_trackers(["exact"]), out=tmp_path / name)
        made[name] = RunFolder(tmp_path / name).record
    assert made["numpy"]["config"] == made["plain"]["config"]
    assert made["numpy"]["data"] == made["plain"]["data"]


@pytest.mark.parametrize("kind", [int, *INTEGERS])
def test_seed_everything_takes_any_integer(kind):
    seed_everything(kind(5))
    drawn = random.random(), torch.rand(1)
    seed_everything(5)
    assert drawn == (random.random(), torch.rand(1))


@pytest.mark.parametrize("seed, message", [(True, "seed=True"), (-1, "seed=-1"), (np.int64(-2), "seed=-2"),
                                           (1.5, "seed=1.5")])
def test_seed_everything_refuses(seed, message):
    with pytest.raises(ValueError, match=f"^{message}: must be a whole number >= 0$"):
        seed_everything(seed)


def test_data_spec_and_preset_take_numpy_numbers():
    spec = DataSpec(samples=np.int64(64), classes=np.int32(8), batch_size=np.int64(16),
                    signal=np.float32(0.5), tail=np.float64(0.25), clusters=np.int64(2),
                    cluster_signal=np.float64(0.125))
    assert spec == DataSpec(samples=64, classes=8, batch_size=16, signal=0.5, tail=0.25, clusters=2,
                            cluster_signal=0.125)
    assert json.dumps(asdict(spec)) and type(spec.samples) is int and type(spec.signal) is float
    changed = preset("tiny", batch_size=np.int64(32))
    assert changed.batch_size == 32 and type(changed.batch_size) is int


@pytest.mark.parametrize("changes, message", [
    ({"samples": True}, "samples=True: must be a whole number"),
    ({"clusters": np.float64(2.0)}, "clusters=np.float64(2.0): must be a whole number"),
    ({"signal": True}, "signal=True: must be a finite number >= 0"),
    ({"tail": np.float32("inf")}, "tail=inf: must be a finite number >= 0"),
])
def test_data_spec_refuses(changes, message):
    with pytest.raises(ValueError) as refused:
        preset("tiny", **changes)
    assert str(refused.value) == message


def test_torchrun_command_takes_a_numpy_world_and_refuses_a_bool():
    assert torchrun_command(np.int64(2), ["--preset", "tiny"])[5] == "2"
    for world in (True, 0, 1.0):
        with pytest.raises(ValueError, match=rf"^world={world!r}: must be a whole number of ranks >= 1$"):
            torchrun_command(world, [])


def test_uneven_data_takes_numpy_sizes_and_keeps_its_messages():
    assert uneven_data(samples=np.int64(10), batch_size=np.int32(4)).batch_size == 4
    with pytest.raises(ValueError, match="^samples=1: must be a whole number >= 2$"):
        uneven_data(samples=1)
    with pytest.raises(ValueError, match="^batch_size=11: must be a whole number from 1 to samples=10$"):
        uneven_data(samples=10, batch_size=11)
    with pytest.raises(ValueError, match="^samples=True: must be a whole number >= 2$"):
        uneven_data(samples=True)


def test_validation_imports_nothing_of_the_package():
    """Any core module may use it, so it may use none of them."""
    from test_layout import PACKAGE, imported_modules

    assert not {m for m in imported_modules(PACKAGE / "validation.py") if m.startswith("accumbug")}
