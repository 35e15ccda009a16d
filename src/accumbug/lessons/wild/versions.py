"""Older framework versions in their own cache folders, run as subprocesses: never installed by surprise.

``cached_install("keras", "3.1.1")`` installs that version (without its dependencies, which the
``[wild]`` extra already provides) into ``<cache>/keras-3.1.1`` with ``pip install --target``,
once; later calls find it there. The cache is ``$ACCUMBUG_CACHE`` if set, else
``~/.cache/accumbug/wild`` (``%LOCALAPPDATA%\\accumbug\\wild`` on Windows). The install goes
into a staging folder first and is renamed into place when complete, so an interrupted
install leaves nothing that looks usable. ``run_with(folder, args)`` runs a Python command with
that folder first on ``sys.path``: the old version shadows the one installed in the
environment for that process only.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

__all__ = ["cache_folder", "cached_install", "run_with"]


def cache_folder() -> Path:
    """Where older versions are kept: ``$ACCUMBUG_CACHE``, or the user's cache folder."""
    if os.environ.get("ACCUMBUG_CACHE"):
        return Path(os.environ["ACCUMBUG_CACHE"])
    if sys.platform == "win32" and os.environ.get("LOCALAPPDATA"):
        return Path(os.environ["LOCALAPPDATA"]) / "accumbug" / "wild"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "accumbug" / "wild"


def cached_install(package: str, version: str, timeout: float = 600) -> Path:
    """The folder holding ``package==version`` (installed there on first use); raises with pip's output on failure."""
    if not package.replace("-", "").replace("_", "").isalnum() or not version.replace(".", "").isalnum():
        raise ValueError(f"{package}=={version}: a package name and a version such as keras and 3.1.1 are needed")
    root = cache_folder()
    target = root / f"{package}-{version}"
    if target.is_dir():
        return target
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{package}-{version}.", dir=root))
    try:
        done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target",
                               str(staging), f"{package}=={version}"], capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"pip could not install {package}=={version} into {root}:\n{done.stderr[-2000:]}")
        try:
            staging.rename(target)
        except OSError:
            if not target.is_dir():  # another process may have put the same version there first
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def run_with(folder: Path, args: list[str], env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``python ARGS`` with ``folder`` first on ``sys.path``; its output comes back as text."""
    environment = {**os.environ, **(env or {})}
    environment["PYTHONPATH"] = os.pathsep.join([str(folder), *filter(None, [environment.get("PYTHONPATH")])])
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=environment, timeout=timeout)
