"""The doctor where linters run: light enough to start in a blink, GitHub annotations, a pre-commit hook.

``python -m accumbug doctor`` imports neither torch, matplotlib, numpy nor the lessons, even on
a run folder or a file of zeros (which gallery mechanisms fit is read from ``doctor/mechanism_evidence.json``);
``--format github`` prints one workflow command per finding, escaped by GitHub's rules; and
``.pre-commit-hooks.yaml`` names an entry that runs. ``benchmarks/bench_doctor.py`` times the start.
"""

import importlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from accumbug.cli import COMMANDS, main
from accumbug.doctor.examine import Examination, mechanism_evidence
from accumbug.doctor.findings import Finding
from accumbug.doctor.formats import format_report

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "tests" / "doctor_corpus"
SPECIMEN = CORPUS / "code" / "lossy-serialiser" / "tutorial.py"
ZEROS = CORPUS / "files" / "keras_history_zeroed_loss.json"
RUN_FOLDER = ROOT / "src" / "accumbug" / "lessons" / "recorded" / "full-cpu"  # read through runfolder.py
HEAVY = ("torch", "matplotlib", "numpy", "accumbug.lessons", "accumbug.specimens")


def _imported_by_the_doctor(*arguments: str) -> tuple[subprocess.CompletedProcess, set[str]]:
    """``python -X importtime -m accumbug doctor ARGUMENTS``, a fresh interpreter: the run, the modules it imported."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "accumbug", "doctor", *arguments],
                          capture_output=True, text=True, timeout=120, check=False)
    modules = {match[1] for match in re.finditer(r"^import time:\s+\d+ \|\s+\d+ \| +(\S+)$", done.stderr,
                                                     re.MULTILINE)}
    return done, modules


def test_the_doctor_imports_neither_torch_nor_plotting_nor_the_lessons():
    done, modules = _imported_by_the_doctor("--json", str(SPECIMEN), str(ZEROS), str(RUN_FOLDER))
    findings = {f["code"]: f for f in json.loads(done.stdout)["findings"]}
    assert done.returncode == 1 and {"lossy-serialiser", "zeroed-history"} <= set(findings)
    gallery = [m["key"] for m in mechanism_evidence()["mechanisms"]]  # each said to fit or not: the stored diagnosis
    assert all(key in findings["zeroed-history"]["consequence"] for key in gallery)
    assert {"accumbug.cli", "accumbug.doctor.examine", "accumbug.doctor.history_files", "accumbug.runfolder"} <= modules
    assert str(RUN_FOLDER) in json.loads(done.stdout)["examined"]
    heavy = sorted(m for m in modules if m.split(".")[0] in HEAVY or m.startswith(HEAVY))
    assert not heavy, f"python -m accumbug doctor imported {', '.join(heavy)}"


def test_the_package_exports_its_core_on_first_use():
    """``import accumbug`` imports no torch; each exported name is its module's object, ``train`` the function even
    once the submodule ``accumbug.train`` is imported; ``dir()`` lists every export."""
    probe = ("import sys, accumbug; light = 'torch' not in sys.modules; import accumbug.train; "
             "print(light, callable(accumbug.train), set(accumbug.__all__) <= set(dir(accumbug)))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.split() == ["True", "True", "True"]
    import accumbug

    assert sorted(accumbug._EXPORTS) == sorted(accumbug.__all__)
    for name in accumbug.__all__:
        assert getattr(accumbug, name) is getattr(importlib.import_module(f"accumbug.{accumbug._EXPORTS[name]}"), name)
    with pytest.raises(AttributeError, match="module 'accumbug' has no attribute 'nope'"):
        accumbug.nope  # noqa: B018 -- the attribute access is the test


def test_a_training_command_still_finds_its_options():
    assert main(["run", "--preset", "nope"]) == 2  # the run command's choices, built only for it
    assert set(COMMANDS) == {"reproduce", "run", "audit", "doctor"}


def test_the_many_inputs_example_of_the_docs_is_what_the_doctor_prints(tmp_path):
    """docs/doctor.md, "Many inputs": a script with a finding, prose, a script that is not valid Python."""
    text = (ROOT / "docs" / "doctor.md").read_text(encoding="utf-8")
    block = re.search(r"^\$ python -m accumbug (doctor .*?) 2>&1 >/dev/null\n(.*?)^\$ .*?\n(.*?)\n```", text,
                      flags=re.MULTILINE | re.DOTALL)
    assert block, "docs/doctor.md: no example of paths that cannot be examined"
    (tmp_path / "train.py").write_bytes(SPECIMEN.read_bytes())
    (tmp_path / "notes.txt").write_text("just some words\n")
    (tmp_path / "half_edited.py").write_text("for epoch in range(3)\n    print(epoch)\n")
    done = subprocess.run([sys.executable, "-m", "accumbug", *block.group(1).split()], capture_output=True,
                          text=True, timeout=120, check=False, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr == block.group(2) and done.stdout.splitlines()[-1] == block.group(3)


# -- --format github --------------------------------------------------------------------------------


def test_github_format_is_one_workflow_command_per_finding(capsys):
    assert main(["doctor", "--format", "github", str(SPECIMEN)]) == 1
    lines = capsys.readouterr().out.splitlines()
    commands = [line for line in lines if line.startswith("::")]
    counted = f"{len(commands)} finding{'s' * (len(commands) != 1)} in 1 of 1"
    assert commands and len(commands) == len(lines) - 1 and lines[-1].startswith(counted)
    where = SPECIMEN.as_posix().replace("%", "%25").replace(":", "%3A").replace(",", "%2C")
    for line in commands:
        assert re.match(rf"::error file={re.escape(where)},line=\d+,title=lossy-serialiser::", line), line
        assert "%0Aconsequence: " in line and "%0Afix: write strict, lossless JSON" in line


def test_github_format_escapes_by_the_workflow_command_rules():
    found = Examination(findings=[
        Finding("host-sync-per-step", "a,b:c/x.py", 3, "50% of\r\nlines", "none", "read once"),
        Finding("non-finite-values", "runs/h.json", None, "loss: nan", "a gap", "keep it"),
        Finding("zeroed-history", "z.json", 1, "all 0.0", "lost"),
        Finding("read-after-reset", "nb.ipynb", 24, "cell 3: read after reset()", "0.0 saved"),
    ], examined=["a,b:c/x.py", "runs/h.json", "z.json", "nb.ipynb"])
    lines = format_report(found, "github").splitlines()
    assert lines[0] == ("::notice file=a%2Cb%3Ac/x.py,line=3,title=host-sync-per-step::.item() or float(tensor) in the "
                        "per-batch path: a host sync per step on a GPU, not a wrong value: 50%25 of%0D%0Alines"
                        "%0Aconsequence: none%0Afix: read once")
    assert lines[1].startswith("::warning file=runs/h.json,title=non-finite-values::NaN or inf")  # no line: no line=
    assert lines[2].startswith("::error file=z.json,line=1,title=zeroed-history::")
    assert lines[3].startswith("::error file=nb.ipynb,title=read-after-reset::")  # a cell's line: not the JSON's
    assert lines[4] == "4 findings in 4 of 4 inputs read (2 errors, 1 warning, 1 info)"


def test_an_unknown_format_is_refused_with_the_allowed_ones():
    with pytest.raises(ValueError, match="form='xml': unknown; allowed: text, json, github"):
        format_report(Examination(), "xml")


# -- the pre-commit hook ----------------------------------------------------------------------------


def _hook() -> dict:
    hooks = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text(encoding="utf-8"))
    assert isinstance(hooks, list) and [h["id"] for h in hooks] == ["accumbug-doctor"]
    return hooks[0]


def test_the_pre_commit_hook_is_declared_as_pre_commit_reads_it():
    hook = _hook()
    assert {"id", "name", "entry", "language"} <= set(hook)
    assert hook["language"] == "python" and hook["types_or"] == ["python", "jupyter"]
    assert hook["entry"] == "python -m accumbug doctor"


def test_the_hooks_entry_runs_the_doctor_on_the_files_pre_commit_passes(tmp_path):
    program, *arguments = _hook()["entry"].split()
    assert program == "python" and arguments[:2] == ["-m", "accumbug"] and arguments[2] in COMMANDS
    clean = sorted((CORPUS / "code" / "clean").glob("*.py"))[:2]
    for files, code in (([SPECIMEN, *clean], 1), (clean, 0)):
        done = subprocess.run([sys.executable, *arguments, *map(str, files)], capture_output=True, text=True,
                              timeout=120, check=False, cwd=tmp_path)
        assert done.returncode == code, done.stderr
