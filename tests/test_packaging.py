"""environment.yml and pyproject.toml must ask for the same packages; README and CI the same commands;
the package data must ship the recorded run."""

import fnmatch
import json
import re
from pathlib import Path, PurePosixPath

import pytest
import yaml
from packaging.requirements import Requirement

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parents[1]
CONDA_NAMES = {"pytorch": "torch", "playwright-python": "playwright"}  # conda-forge name -> PyPI name


def _split(requirement: str) -> tuple[str, str]:
    name, spec = re.match(r"([A-Za-z0-9_.-]+)\s*(.*)", requirement).groups()
    return CONDA_NAMES.get(name.lower(), name.lower()), spec.replace(" ", "")


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = dict(_split(r) for r in project["dependencies"])
    for extra in ("lab", "test"):
        wanted.update(_split(r) for r in project["optional-dependencies"][extra])
    environment = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = [d for d in environment["dependencies"] if isinstance(d, str)]
    pip = next(d["pip"] for d in environment["dependencies"] if isinstance(d, dict))
    have = dict(_split(d) for d in conda if _split(d)[0] not in ("python", "pip"))
    assert have == wanted
    assert pip == ["-e .[lab,test]"]
    python = next(d for d in conda if d.startswith("python"))
    assert python.replace("python", "") == project["requires-python"]


def test_torch_range_admits_the_cpu_wheel():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    torch = Requirement(next(r for r in project["dependencies"] if r.startswith("torch")))
    # 2.13.0 (the CPU wheel CI preinstalls) satisfies it; a bare 'torch' would pull a CUDA build
    assert torch.specifier.contains("2.13.0") and not torch.specifier.contains("3.0.0")
    assert not torch.specifier.contains("2.2.2")  # data.py reads hashes as torch.uint16, new in 2.3


def test_ci_runs_the_readmes_commands():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    install = 'pip install -e ".[lab,test]"'
    assert f"{install} && python -m accumbug reproduce" in readme
    assert install in ci
    assert re.search(r"^pytest$", readme, re.MULTILINE) and re.search(r"^\s*pytest( |$)", ci, re.MULTILINE)


def test_numpy_is_a_base_dependency():
    """specimens/serialisers.py imports numpy, and every install of the package imports it through lab."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "numpy" in {Requirement(r).name for r in project["dependencies"]}


def _shipped(relative: PurePosixPath, patterns: list[str]) -> bool:
    return any(len(relative.parts) == len(PurePosixPath(p).parts)
               and all(fnmatch.fnmatchcase(part, glob) for part, glob in zip(relative.parts, PurePosixPath(p).parts))
               for p in patterns)


def test_package_data_ships_the_recorded_run_but_not_its_checkpoint():
    """The audit reads the recorded run from the installed package: its config, commit and committed files."""
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"][
        "accumbug.lessons"]
    lessons = ROOT / "src" / "accumbug" / "lessons"
    run = lessons / "recorded" / "full-cpu"
    commit = json.loads((run / "commit.json").read_text())
    needed = ["config.json", "commit.json", *(f"{commit['folder']}/{name}" for name in commit["files"]
                                              if name != "checkpoint.pt")]
    for name in needed:
        assert (run / name).is_file(), name
        assert _shipped(PurePosixPath("recorded", "full-cpu", name), patterns), f"{name} is not in package-data"
    assert not _shipped(PurePosixPath("recorded", "full-cpu", commit["folder"], "checkpoint.pt"), patterns)


def test_package_data_ships_the_doctors_copy_of_the_mechanism_diagnosis():
    """The doctor reads the gallery's stored diagnosis (``doctor/mechanism_evidence.json``) when installed."""
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"][
        "accumbug.doctor"]
    assert (ROOT / "src" / "accumbug" / "doctor" / "mechanism_evidence.json").is_file()
    assert _shipped(PurePosixPath("mechanism_evidence.json"), patterns)


def test_the_wild_extra_is_the_frameworks_the_cases_declare():
    """pyproject.toml's [wild] extra pins exactly the distributions of ``lessons.wild.FRAMEWORKS``."""
    from accumbug.lessons.wild import FRAMEWORKS

    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["wild"]
    pinned = {Requirement(r).name.lower() for r in extra}
    assert pinned == set(FRAMEWORKS.values())
    assert all(str(Requirement(r).specifier).startswith("==") for r in extra)  # notebook 07 measures these versions
