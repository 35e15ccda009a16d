"""Older framework versions in their own cache folders, run as subprocesses: never installed by surprise.

``cached_install("keras", "3.1.1")`` installs that version (without its dependencies, which the
``[wild]`` extra already provides) into ``<cache>/keras-3.1.1`` with ``pip install --target``,
once; later calls find it there. The cache is ``$ACCUMBUG_CACHE`` if set, else
``~/.cache/accumbug/wild`` (``%LOCALAPPDATA%\\accumbug\\wild`` on Windows). The install goes
into a staging folder first and is renamed into place when complete, so an interrupted
install leaves nothing that looks usable. ``run_with(folder, args)`` runs a Python command with
that folder first on ``sys.path``: the old version shadows the one installed in the
environment for that process only; ``run_with(None, args)`` runs it with the environment as it
is, so the installed version is measured the same way (in a process of its own).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

__all__ = ["cache_folder", "cached_install", "run_with"]

# a distribution name (PEP 508) and a version (PEP 440's characters), ASCII only: nothing pip could read
# as an option (``-e``), a path or a URL, and a folder name that stays inside the cache
_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?", re.ASCII)
_VERSION = re.compile(r"[0-9][A-Za-z0-9.!+-]*", re.ASCII)


def cache_folder() -> Path:
    """Where older versions are kept: ``$ACCUMBUG_CACHE``, or the user's cache folder."""
    if os.environ.get("ACCUMBUG_CACHE"):
        return Path(os.environ["ACCUMBUG_CACHE"])
    if sys.platform == "win32" and os.environ.get("LOCALAPPDATA"):
        return Path(os.environ["LOCALAPPDATA"]) / "accumbug" / "wild"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "accumbug" / "wild"


def cached_install(package: str, version: str, timeout: float = 600) -> Path:
    """The folder holding ``package==version`` (installed there on first use); raises with pip's output on failure."""
    if not (isinstance(package, str) and _NAME.fullmatch(package) and isinstance(version, str)
            and _VERSION.fullmatch(version)):
        raise ValueError(f"{package!r}=={version!r}: a package name and a version such as keras and 3.1.1 are needed")
    root = cache_folder()
    target = root / f"{package}-{version}"
    if target.is_dir():
        return target
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{package}-{version}.", dir=root))
    try:
        done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target",
                               str(staging), f"{package}=={version}"], capture_output=True, text=True, timeout=timeout,
                              check=False)
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


def run_with(folder: Path | None, args: list[str], env: dict | None = None,
             timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``python ARGS`` with ``folder`` first on ``sys.path`` (None: the environment's own packages) and
    ``env`` added to the environment; its output comes back as text."""
    environment = {**os.environ, **(env or {})}
    if folder is not None:
        environment["PYTHONPATH"] = os.pathsep.join([str(folder), *filter(None, [environment.get("PYTHONPATH")])])
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=environment, timeout=timeout,
                          check=False)
