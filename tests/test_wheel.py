"""The wheel, installed outside the checkout, runs the audit on its recorded run and reproduces.

A normal install has no ``data/`` folder and no checkout on ``sys.path``: the recorded run
must come from the package itself (``importlib.resources``), and the commands must write
only to the current folder. The wheel is built from a copy of the sources, so the checkout
is not written to; it is installed with ``pip install --no-deps --target`` (torch and the
other requirements come from this environment) and put first on ``PYTHONPATH``.
"""

import importlib.metadata
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def build_isolation() -> list[str]:
    """Build with this environment's setuptools where it can build wheels by itself (70.1 and later), so
    no network is needed; else in pip's isolated build environment, which fetches setuptools."""
    try:
        if Version(importlib.metadata.version("setuptools")) >= Version("70.1"):
            return ["--no-build-isolation"]
    except importlib.metadata.PackageNotFoundError:
        pass
    return []


def files_under(folder: Path) -> dict[str, int]:
    """Every file below ``folder``, relative path -> modification time in ns."""
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The wheel built from a copy of the sources and installed into a folder of its own."""
    base = tmp_path_factory.mktemp("wheel")
    sources = base / "sources"
    sources.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, sources / name)
    shutil.copytree(ROOT / "src", sources / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    dist, target = base / "dist", base / "target"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", *build_isolation(), "--quiet", "-w", str(dist),
                    str(sources)], check=True, capture_output=True, text=True)
    wheels = list(dist.glob("accumbug-*.whl"))
    assert len(wheels) == 1, wheels
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target", str(target),
                    str(wheels[0])], check=True, capture_output=True, text=True)
    return target


def run_installed(target: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(target)}
    # the callers assert the return code with stderr as the message
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=900,
                          check=False)


def test_the_wheel_holds_the_recorded_run_without_its_checkpoint(installed):
    recorded = installed / "accumbug" / "lessons" / "recorded" / "full-cpu"
    assert (recorded / "config.json").is_file() and (recorded / "commit.json").is_file()
    epoch = recorded / "epoch-0004"
    assert (epoch / "console.log").is_file()
    assert len(list(epoch.glob("history-*.json"))) == 7
    assert not list(recorded.rglob("*.pt"))


def test_audit_and_reproduce_from_the_wheel_write_only_to_the_current_folder(installed, tmp_path):
    cwd = tmp_path / "work"
    cwd.mkdir()
    where = run_installed(installed, cwd, "-c", "import accumbug, accumbug.lessons.audit as a; "
                                                "print(accumbug.__file__); print(a.recorded_run())")
    assert where.returncode == 0, where.stderr
    module, recorded = where.stdout.splitlines()
    assert Path(module).is_relative_to(installed), f"accumbug imported from {module}, not from the wheel"
    assert Path(recorded).is_relative_to(installed), recorded
    package_before = files_under(installed)

    audit = run_installed(installed, cwd, "-m", "accumbug", "audit")
    assert audit.returncode == 0, audit.stderr
    assert "no recorded run" not in audit.stdout and "not measured" not in audit.stdout, audit.stdout
    claims = (cwd / "claims.md").read_text(encoding="utf-8")
    assert "not measured" not in claims and "recorded full run" in claims

    reproduce = run_installed(installed, cwd, "-m", "accumbug", "reproduce", "--preset", "tiny", "--epochs", "1",
                              "--no-progress")
    assert reproduce.returncode == 0, reproduce.stderr
    runs = list((cwd / "runs").iterdir())
    assert len(runs) == 1 and runs[0].name.startswith("reproduce-tiny-")
    assert (runs[0] / "commit.json").is_file() and (runs[0] / "divergence.png").is_file()

    assert sorted(p.name for p in cwd.iterdir()) == ["claims.md", "runs"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["work"]
    assert files_under(installed) == package_before, "the commands wrote into the installed package"
