"""Keras in the wild (``lessons/wild/keras_cases.py``), and the cache of older versions (``versions.py``).

The subprocess tests run Keras 3.1.1, 3.5.0 and the installed one once (module fixture) and check
each against values recomputed here from the data set, so a change in Keras's behaviour fails
them. The cache folder is the user's default (``ACCUMBUG_CACHE`` if set): the first run installs
the two old versions there, later runs find them.
"""

import json
import os
import subprocess
from importlib.metadata import version as installed_version
from pathlib import Path

import pytest
import torch

from accumbug.doctor.consoles import read_console
from accumbug.lessons.wild import keras_cases as module
from accumbug.lessons.wild import versions
from accumbug.lessons.wild.data import uneven_data
from accumbug.lessons.wild.keras_cases import keras_cases, upstream

CONSOLE_ROUNDING = 0.5e-4 + 2e-6  # four decimals printed, float32 sums underneath


def need_keras(wild):
    """Keras from the ``[wild]`` extra, imported on the torch backend (the default one, TensorFlow, is not there)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KERAS_BACKEND", "torch")
        return wild("keras")


def running_means(weighted: bool) -> list[float]:
    """Keras's loss after each step of the epoch: the running mean over samples, or over batch means."""
    data = uneven_data()
    if weighted:
        losses = data.losses()
        ends = torch.arange(data.batch_size, len(losses) + data.batch_size, data.batch_size).clamp(max=len(losses))
        return (losses.cumsum(0)[ends - 1] / ends).tolist()
    means = data.batch_means()
    return [sum(means[:k]) / k for k in range(1, len(means) + 1)]


def progress_bar_shows(running: list[float]) -> float:
    """What Keras's progress bar prints last when it averages the running means again, step-weighted, and
    its epoch-end update adds the final value once more: ``(r_1 + ... + r_n + r_n) / (n + 1)``."""
    return (sum(running) + running[-1]) / (len(running) + 1)


@pytest.fixture(scope="module")
def measured(tmp_path_factory, wild):
    """The three default versions' cases, by version, and the folder their files went to."""
    need_keras(wild)
    out = tmp_path_factory.mktemp("wild")
    return {case.version: case for case in keras_cases(out)}, out


def test_the_data_set_shows_the_bug_clearly():
    """The references differ by far more than the console's rounding, so the tests below tell them apart."""
    data = uneven_data()
    references = [data.exact(), data.mean_of_batch_means(), progress_bar_shows(running_means(True)),
                  progress_bar_shows(running_means(False))]
    assert min(abs(a - b) for i, a in enumerate(references) for b in references[i + 1:]) > 0.01
    assert running_means(True)[-1] == pytest.approx(data.exact(), rel=1e-12)
    assert running_means(False)[-1] == pytest.approx(data.mean_of_batch_means(), rel=1e-12)


@pytest.mark.slow
def test_keras_3_1_1_saves_the_mean_of_batch_means(measured, wild):
    need_keras(wild)
    case, data = measured[0]["3.1.1"], uneven_data()
    assert case.saved == pytest.approx(data.mean_of_batch_means(), rel=1e-6)
    assert case.saved_error > 0.2
    assert case.displayed == pytest.approx(progress_bar_shows(running_means(False)), abs=CONSOLE_ROUNDING)
    assert case.upstream == "keras-team/keras#19363" and "mean of batch means" in case.note


@pytest.mark.slow
def test_keras_3_5_0_saves_the_exact_loss_but_prints_running_means_averaged_again(measured, wild):
    need_keras(wild)
    case, data = measured[0]["3.5.0"], uneven_data()
    assert case.saved == pytest.approx(data.exact(), rel=1e-6)
    assert case.displayed == pytest.approx(progress_bar_shows(running_means(True)), abs=CONSOLE_ROUNDING)
    assert abs(case.displayed - case.saved) > 0.1 and not case.is_exact
    assert case.upstream == "keras-team/keras#21331" and "another value" in case.note


@pytest.mark.slow
def test_the_installed_keras_is_exact(measured, wild):
    need_keras(wild)
    case, data = measured[0][installed_version("keras")], uneven_data()
    assert case.saved == pytest.approx(data.exact(), rel=1e-6)
    assert case.displayed == pytest.approx(data.exact(), abs=CONSOLE_ROUNDING)
    assert case.is_exact and case.framework == "Keras"


@pytest.mark.slow
def test_the_files_are_what_the_doctor_reads(measured, wild):
    need_keras(wild)
    cases, out = measured
    assert list(cases) == ["3.1.1", "3.5.0", installed_version("keras")]
    for version, case in cases.items():
        history, console = out / "keras" / f"history-{version}.json", out / "keras" / f"console-{version}.log"
        assert case.files == (str(history), str(console))
        assert json.loads(history.read_text(encoding="utf-8"))["loss"][0] == case.saved
        assert read_console(console).epochs[1]["loss"] == case.displayed
        assert case.console.startswith("65/65") and case.console.endswith(f"loss: {case.displayed:.4f}")


def test_upstream_names_the_change_each_version_lacks_or_the_last_one():
    assert [upstream(v) for v in ("3.1.1", "3.2.0", "3.10.0", "3.11.0", "3.14.0", "3.15.1")] == [
        "keras-team/keras#19363", "keras-team/keras#21331", "keras-team/keras#21331",
        "keras-team/keras#23030", "keras-team/keras#23030", "keras-team/keras#23030"]


def test_a_failed_worker_raises_with_its_error_output(monkeypatch, tmp_path):
    failed = subprocess.CompletedProcess([], 1, stdout="", stderr="Traceback ...\nImportError: no torch backend")
    monkeypatch.setattr(module, "cached_install", lambda package, version: tmp_path / f"{package}-{version}")
    monkeypatch.setattr(module, "run_with", lambda folder, args, env: failed)
    with pytest.raises(RuntimeError, match=r"(?s)Keras 3\.1\.1 worker exited with 1:\n.*no torch backend"):
        keras_cases(tmp_path, versions=("3.1.1",))


def test_a_worker_that_ran_another_version_is_refused(monkeypatch, tmp_path):
    report = json.dumps({"version": "3.15.1", "history": {"loss": [1.0]}})
    monkeypatch.setattr(module, "cached_install", lambda package, version: tmp_path)
    monkeypatch.setattr(module, "run_with", lambda folder, args, env: subprocess.CompletedProcess([], 0, report, ""))
    with pytest.raises(RuntimeError, match=r"Keras 3\.5\.0 was asked for but Keras 3\.15\.1 ran"):
        keras_cases(tmp_path, versions=("3.5.0",))


# -- the cache of older versions --------------------------------------------------------------------


@pytest.mark.parametrize("package, version", [("keras", "3.1.1 --index-url=http://x"), ("-e", "3.1.1"),
                                              ("../keras", "3.1.1"), ("keras", ""), ("keras", None), ("", "1.0"),
                                              ("kéras", "3.1.1"), ("keras", "../../3")])
def test_the_cache_refuses_what_is_not_a_name_and_a_version(package, version, monkeypatch, tmp_path):
    monkeypatch.setenv("ACCUMBUG_CACHE", str(tmp_path))
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("pip must not run"))
    with pytest.raises(ValueError, match="a package name and a version"):
        versions.cached_install(package, version)


def fake_pip(returncode: int, calls: list):
    """A ``subprocess.run`` that records each command and, on success, puts a module in the ``--target`` folder."""
    def run(command, **kwargs):
        calls.append(command)
        if returncode == 0:
            target = command[command.index("--target") + 1]
            (Path(target) / "fake.py").write_text("", encoding="utf-8")
        return subprocess.CompletedProcess(command, returncode, "", "ERROR: No matching distribution")
    return run


def test_the_cache_installs_once(monkeypatch, tmp_path):
    monkeypatch.setenv("ACCUMBUG_CACHE", str(tmp_path))
    calls = []
    monkeypatch.setattr(subprocess, "run", fake_pip(0, calls))
    first = versions.cached_install("keras", "3.1.1")
    assert versions.cached_install("keras", "3.1.1") == first == tmp_path / "keras-3.1.1"
    assert len(calls) == 1 and calls[0][-1] == "keras==3.1.1" and "--no-deps" in calls[0]
    assert (first / "fake.py").is_file() and [p.name for p in tmp_path.iterdir()] == ["keras-3.1.1"]


def test_a_failed_install_leaves_nothing_behind(monkeypatch, tmp_path):
    monkeypatch.setenv("ACCUMBUG_CACHE", str(tmp_path))
    calls = []
    monkeypatch.setattr(subprocess, "run", fake_pip(1, calls))
    with pytest.raises(RuntimeError, match=r"(?s)pip could not install keras==9\.9\.9 .*No matching distribution"):
        versions.cached_install("keras", "9.9.9")
    assert len(calls) == 1 and list(tmp_path.iterdir()) == []


def test_run_with_puts_the_folder_first_or_leaves_the_path_alone(monkeypatch, tmp_path):
    monkeypatch.setenv("PYTHONPATH", "elsewhere")
    seen = []
    monkeypatch.setattr(subprocess, "run", lambda command, **kwargs: seen.append(kwargs["env"]))
    versions.run_with(tmp_path, ["-c", "pass"], env={"KERAS_BACKEND": "torch"})
    versions.run_with(None, ["-c", "pass"])
    assert seen[0]["PYTHONPATH"].split(os.pathsep) == [str(tmp_path), "elsewhere"]
    assert seen[0]["KERAS_BACKEND"] == "torch" and seen[1]["PYTHONPATH"] == "elsewhere"
