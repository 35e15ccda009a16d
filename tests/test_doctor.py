"""The doctor end to end: what it reads, what it pairs, its report, its exit codes."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from accumbug.cli import main
from accumbug.config import TrainConfig
from accumbug.doctor.examine import examine, fitting_mechanisms
from accumbug.doctor.findings import FINDING_CODES, Finding, UnusableInput, ordered
from accumbug.doctor.formats import format_findings, format_findings_json
from accumbug.trackers import ExactTracker
from accumbug.train import train

CORPUS = Path(__file__).parent / "doctor_corpus"
FILES = CORPUS / "files"
INCIDENT = (FILES / "incident_history_reconstructed.json", FILES / "incident_console.log")


def test_clean_code_and_healthy_files_give_nothing_and_exit_0(capsys):
    healthy = [p for p in FILES.iterdir() if "healthy" in p.name]
    assert main(["doctor", str(CORPUS / "code" / "clean"), *map(str, healthy)]) == 0
    assert capsys.readouterr().out.strip().startswith("0 findings in 0 of ")


def test_a_specimen_is_reported_and_exits_1(capsys):
    assert main(["doctor", str(CORPUS / "code" / "lossy-serialiser" / "tutorial.py")]) == 1
    out = capsys.readouterr().out
    assert "error    lossy-serialiser" in out and "fix: write strict, lossless JSON" in out


def test_json_output_has_every_field(capsys):
    assert main(["doctor", "--json", str(CORPUS / "code" / "aliased-state")]) == 1
    document = json.loads(capsys.readouterr().out)
    assert document["findings"] and {f["code"] for f in document["findings"]} <= set(FINDING_CODES)
    for finding in document["findings"]:
        assert set(finding) >= {"code", "path", "line", "message", "evidence", "consequence", "fix", "severity"}
    assert sorted(document["examined"]) == sorted(str(p) for p in (CORPUS / "code" / "aliased-state").iterdir())


def test_a_history_and_a_console_given_by_name_are_compared_but_not_when_found_by_walking(tmp_path):
    named = examine(list(INCIDENT))
    assert [f.code for f in named.findings].count("file-disagrees-with-console") == 1
    for path in INCIDENT:
        (tmp_path / path.name).write_bytes(path.read_bytes())
    walked = examine([tmp_path])
    assert "file-disagrees-with-console" not in {f.code for f in walked.findings}
    assert walked.findings == []  # a loss of zeros with nothing beside it is no finding on its own


def test_a_run_folder_is_read_with_its_console_and_is_healthy(tmp_path):
    train(TrainConfig(preset="tiny", epochs=2), [ExactTracker()], out=tmp_path / "run")
    (tmp_path / "notes.bin").write_bytes(b"\x00\x01")
    result = examine([tmp_path])
    assert result.findings == [] and result.examined == [str(tmp_path / "run")]
    assert result.skipped == [str(tmp_path / "notes.bin")]


@pytest.mark.slow
def test_the_incident_pair_names_the_mechanisms_that_fit():
    findings = examine(list(INCIDENT)).findings
    disagree = next(f for f in findings if f.code == "file-disagrees-with-console")
    assert "epochs 1-4" in disagree.evidence
    assert ("console real every epoch: yes; not seen, so not used: saved accuracies non-zero, weights fine): "
            "broad-sanitiser, aliased-reset, read-after-reset; that do not:") in disagree.consequence


@pytest.mark.slow
def test_fitting_mechanisms_follow_the_gallery():
    assert fitting_mechanisms({"console_real": True, "file_zero": True, "accuracies": True})[0] == [
        "broad-sanitiser", "aliased-reset"]
    assert "read-after-reset" in fitting_mechanisms({"console_real": True, "file_zero": True})[0]


@pytest.mark.parametrize("content, why", [
    (None, "no such file or folder"),
    (b"\x00\x01\x02binary", "binary"),
    (b"caf\xe9 latin-1", "not UTF-8"),
    (b"", "empty"),
    (b"just some words\n", "not a training script, notebook, history or console log"),
])
def test_unusable_input_is_one_line_on_stderr_and_exit_2(tmp_path, capsys, content, why):
    path = tmp_path / "input.txt"
    if content is not None:
        path.write_bytes(content)
    assert main(["doctor", str(path)]) == 2
    printed = capsys.readouterr()
    err = printed.err.strip()
    assert err.count("\n") == 0 and err.startswith(f"{path}: ") and why in err
    assert printed.out.strip().endswith("; 1 not examined (on stderr)")


def test_one_bad_path_among_many_is_one_line_and_the_others_are_reported(tmp_path, capsys):
    broken, missing = tmp_path / "broken.py", tmp_path / "missing.py"
    broken.write_text("for epoch in range(3)\n    print(epoch)\n")
    good = sorted((CORPUS / "code" / "clean").glob("*.py"))[:3]
    specimen = CORPUS / "code" / "lossy-serialiser" / "tutorial.py"
    assert main(["doctor", *map(str, good), str(broken), str(specimen), str(missing)]) == 2
    printed = capsys.readouterr()
    assert printed.err.splitlines() == [f"{broken}: not valid Python (expected ':', line 1)",
                                        f"{missing}: no such file or folder"]
    assert "error    lossy-serialiser" in printed.out
    assert printed.out.splitlines()[-1].startswith(f"1 finding in 1 of {len(good) + 1} inputs read")
    assert main(["doctor", "--json", *map(str, good), str(missing)]) == 2
    document = json.loads(capsys.readouterr().out)
    assert document["examined"] == list(map(str, good))
    assert document["unusable"] == [{"path": str(missing), "reason": "no such file or folder"}]


@pytest.mark.parametrize("inputs, code", [
    (["clean"], 0),  # nothing found
    (["specimen"], 1),  # findings
    (["clean", "missing"], 2),  # a path not examined
    (["specimen", "missing"], 2),  # both: the incomplete check wins
    (["--format", "xml", "clean"], 2),  # a bad argument
])
def test_the_exit_code_says_found_nothing_found_something_or_could_not_look(tmp_path, inputs, code):
    named = {"clean": str(CORPUS / "code" / "clean"), "specimen": str(CORPUS / "code" / "lossy-serialiser"),
             "missing": str(tmp_path / "missing.py")}
    assert main(["doctor", *(named.get(given, given) for given in inputs)]) == code


def test_a_check_that_fails_on_one_file_costs_that_file_only(monkeypatch, capsys):
    """A bug of the doctor's: that file's line says so and exits 2 (never 1, which means findings)."""
    import accumbug.doctor.examine as examine_module

    def check_python(text, path):
        if path.endswith("tutorial.py"):
            raise RuntimeError("boom")
        return []

    monkeypatch.setattr(examine_module, "check_python", check_python)
    clean, specimen = CORPUS / "code" / "clean" / "cpu_loop.py", CORPUS / "code" / "lossy-serialiser" / "tutorial.py"
    assert main(["doctor", str(clean), str(specimen)]) == 2
    printed = capsys.readouterr()
    assert printed.err == f"{specimen}: the doctor failed on it (RuntimeError: boom); a bug in the doctor, not in " \
                          "the file: please report it with the file\n"
    assert printed.out.startswith("0 findings in 0 of 1 input read")
    with pytest.raises(RuntimeError, match="boom"):
        examine([specimen])


def test_examine_raises_for_an_unusable_path_unless_told_to_keep_going(tmp_path):
    missing = tmp_path / "missing.json"
    with pytest.raises(UnusableInput, match=f"^{re.escape(str(missing))}: no such file or folder$"):
        examine([CORPUS / "code" / "clean", missing])
    kept = examine([CORPUS / "code" / "clean", missing], keep_going=True)
    assert [str(u) for u in kept.unusable] == [f"{missing}: no such file or folder"] and kept.examined
    with pytest.raises(ValueError, match="keep_going='yes': must be True or False"):
        examine([missing], keep_going="yes")


def test_a_huge_file_is_refused_by_its_size_from_the_command_line(tmp_path):
    huge = tmp_path / "huge.json"
    with open(huge, "wb") as handle:
        handle.truncate(200 * 1024 * 1024)
    done = subprocess.run([sys.executable, "-m", "accumbug", "doctor", str(huge)], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 2 and "Traceback" not in done.stderr and str(huge) in done.stderr


def test_findings_are_ordered_by_file_then_severity():
    made = [Finding("host-sync-per-step", "b.py", 3, "e", "c"), Finding("mean-of-batch-means", "b.py", 9, "e", "c"),
            Finding("lossy-serialiser", "a.py", 1, "e", "c")]
    assert [(f.path, f.code) for f in ordered(made)] == [("a.py", "lossy-serialiser"), ("b.py", "mean-of-batch-means"),
                                                         ("b.py", "host-sync-per-step")]
    with pytest.raises(ValueError, match="code='typo': not in the doctor's vocabulary"):
        Finding("typo", "a.py", 1, "e", "c")


def test_text_report_groups_by_file_and_ends_with_the_summary():
    result = examine([CORPUS / "code" / "host-sync-per-step"])
    text = format_findings(result)
    assert text.splitlines()[-1] == (f"{len(result.findings)} findings in {len({f.path for f in result.findings})} of "
                                     f"{len(result.examined)} inputs read (0 errors, 0 warnings, "
                                     f"{len(result.findings)} info)")
    assert json.loads(format_findings_json(result))["findings"][0]["severity"] == "info"
