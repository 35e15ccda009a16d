"""The package's layout, read from its source: layers, function size, dependencies, the tracker protocol.

* the reference core (the modules directly in ``src/accumbug/`` but the entry points
  ``__init__``, ``__main__``, ``cli``, ``lab`` and ``registry``) never imports ``specimens`` or
  ``lessons``, and ``specimens`` never imports ``lessons``;
* the doctor never imports ``lessons`` (the lessons may use the doctor), and ``registry``
  imports neither, so the lessons may name trackers through it;
* no function or method is longer than ``MAX_FUNCTION_LINES``;
* every third-party module the package imports is declared in ``pyproject.toml``;
* every tracker speaks the protocol of ``accumbug.trackers.Tracker``, and the trainer relies
  on nothing else: it never asks a tracker's class;
* nothing in the package loads C libraries by hand (``ctypes``).
"""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from accumbug.config import TrainConfig
from accumbug.lessons.wild import FRAMEWORKS
from accumbug.registry import TRACKER_KINDS, make_tracker
from accumbug.specimens.gallery_trackers import GuardedTracker, InPlaceMeanTracker, TensorLossTracker
from accumbug.trackers import ExactTracker, MetricTracker, Tracker
from accumbug.train import train

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "accumbug"
ENTRY_POINTS = {"__init__.py", "__main__.py", "cli.py", "lab.py", "registry.py"}  # not the core
CORE = sorted(p for p in PACKAGE.glob("*.py") if p.name not in ENTRY_POINTS)
SPECIMENS = sorted((PACKAGE / "specimens").rglob("*.py"))
DOCTOR = sorted((PACKAGE / "doctor").rglob("*.py"))
SOURCES = sorted(PACKAGE.rglob("*.py"))
MAX_FUNCTION_LINES = 40
# import name -> distribution name, where they differ: the check must hold where a declared distribution is not
# installed to ask (the [wild] frameworks on a machine without that extra); each entry is checked against the
# installed distributions where its import name is installed (test_import_names_agree_with_the_installed_distributions)
IMPORT_NAMES = {"yaml": "pyyaml", "PIL": "pillow", "sklearn": "scikit-learn", "IPython": "ipython",
                **{name: distribution for name, distribution in FRAMEWORKS.items() if name != distribution}}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _tree(path: Path, source: str | None = None) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8") if source is None else source, filename=str(path))


def imported_modules(path: Path, source: str | None = None) -> set[str]:
    """Every module ``path`` (or ``source`` as if it were there) imports, absolute: relative imports resolved,
    ``from X import y`` giving X and X.y, ``import_module("X")`` giving X."""
    package = _module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found = set()
    for node in ast.walk(_tree(path, source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Call) and _called(node) in ("import_module", "__import__") and node.args \
                and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
            found.add(node.args[0].value)
    return found


def _called(call: ast.Call) -> str | None:
    func = call.func
    return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None


def _under(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


# -- layers -----------------------------------------------------------------------------------------


def test_the_layers_are_where_the_layout_says():
    assert {p.name for p in CORE} >= {"checkpoint.py", "config.py", "data.py", "distributed.py", "history.py",
                                      "model.py", "runfolder.py", "seeding.py", "stopping.py", "trackers.py",
                                      "train.py", "validation.py"}
    assert SPECIMENS and (PACKAGE / "lessons" / "__init__.py").is_file()


def test_imported_modules_finds_every_spelling_of_an_import():
    """The parser the layer tests rely on: relative imports at each level, absolute ones, import_module."""
    source = ("from ..specimens import serialisers\nfrom . import tables\nimport accumbug.lessons.plots\n"
              "from accumbug import specimens\nfrom .. import lessons as taught\n"
              "importlib.import_module('ctypes')\n")
    found = imported_modules(PACKAGE / "lessons" / "probe.py", source)
    assert {"accumbug.specimens.serialisers", "accumbug.lessons.tables", "accumbug.lessons.plots",
            "accumbug.specimens", "accumbug.lessons", "ctypes"} <= found
    assert "accumbug.lessons.audit" in imported_modules(PACKAGE / "train.py", "from .lessons.audit import run_audit\n")
    assert "accumbug.specimens" in imported_modules(PACKAGE / "train.py", "from . import specimens\n")


@pytest.mark.parametrize("path", CORE, ids=lambda p: p.name)
def test_the_core_never_imports_specimens_or_lessons(path):
    wrong = sorted(m for m in imported_modules(path)
                   if _under(m, "accumbug.specimens") or _under(m, "accumbug.lessons"))
    assert not wrong, f"{path.relative_to(ROOT)} imports {', '.join(wrong)}; the core may not"


@pytest.mark.parametrize("path", SPECIMENS, ids=lambda p: p.name)
def test_specimens_never_import_lessons(path):
    wrong = sorted(m for m in imported_modules(path) if _under(m, "accumbug.lessons"))
    assert not wrong, f"{path.relative_to(ROOT)} imports {', '.join(wrong)}; specimens may not"


@pytest.mark.parametrize("path", DOCTOR, ids=lambda p: p.name)
def test_the_doctor_never_imports_lessons(path):
    """The lessons may use the doctor; the doctor reads the gallery's diagnosis from its own data file."""
    wrong = sorted(m for m in imported_modules(path) if _under(m, "accumbug.lessons"))
    assert not wrong, f"{path.relative_to(ROOT)} imports {', '.join(wrong)}; the doctor may not"


def test_the_registry_imports_only_the_core_and_specimens():
    """The lessons, the command line and ``lab`` all name trackers through it, so it may not import them."""
    wrong = sorted(m for m in imported_modules(PACKAGE / "registry.py")
                   if any(_under(m, f"accumbug.{layer}") for layer in ("lessons", "doctor", "cli", "lab")))
    assert not wrong, f"registry.py imports {', '.join(wrong)}; it may import the core and specimens only"


@pytest.fixture(scope="module")
def fresh_import() -> list[tuple[int, str]]:
    """What ``import accumbug`` and its exports (imported on first use) import in a fresh interpreter, as
    ``python -X importtime`` reports it.

    One ``(depth, module)`` per module, in the order each finished importing: a module's
    importer is the first module after it at a smaller depth.
    """
    done = subprocess.run([sys.executable, "-X", "importtime", "-c",
                           "import accumbug; [getattr(accumbug, name) for name in accumbug.__all__]"],
                          capture_output=True, text=True, timeout=120, check=True)
    found = []
    for line in done.stderr.splitlines():
        match = re.fullmatch(r"import time:\s+\d+ \|\s+\d+ \|( +)(\S+)", line)
        if match:
            found.append((len(match[1]), match[2]))
    return found


@pytest.mark.slow
def test_importing_the_package_loads_the_core_only(fresh_import):
    loaded = {m for _, m in fresh_import if _under(m, "accumbug")}
    assert {"accumbug.trackers", "accumbug.train"} <= loaded
    assert not {m for m in loaded if _under(m, "accumbug.specimens") or _under(m, "accumbug.lessons")}


# -- function size ----------------------------------------------------------------------------------


def test_no_function_is_longer_than_the_limit():
    long = []
    for path in SOURCES:
        for node in ast.walk(_tree(path)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, f"functions longer than {MAX_FUNCTION_LINES} lines: " + "; ".join(long)


# -- dependencies -----------------------------------------------------------------------------------


def _normalised(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _third_party(paths) -> dict[str, set[str]]:
    """Top-level third-party import names, each with the source files that import it."""
    found: dict[str, set[str]] = {}
    for path in paths:
        for module in imported_modules(path):
            top = module.split(".")[0]
            if top and top != "accumbug" and top not in sys.stdlib_module_names and top != "__future__":
                found.setdefault(top, set()).add(str(path.relative_to(PACKAGE)))
    return found


@functools.cache
def _installed() -> dict[str, list[str]]:
    """Import name -> the installed distributions that provide it."""
    return importlib.metadata.packages_distributions()


def _distributions(import_name: str, ask_installed: bool = True) -> set[str]:
    """The distributions that provide ``import_name``: the installed ones where there are any (and
    ``ask_installed``), else the one ``IMPORT_NAMES`` names, else the distribution of the same name."""
    installed = _installed().get(import_name) if ask_installed else None
    if installed:
        return {_normalised(name) for name in installed}
    return {_normalised(IMPORT_NAMES.get(import_name, import_name))}


def _declared(groups) -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    requirements = [r for group in groups
                    for r in (project["dependencies"] if group is None else project["optional-dependencies"][group])]
    return {_normalised(Requirement(r).name) for r in requirements}


@pytest.mark.parametrize("ask_installed", [True, False], ids=["as-installed-here", "as-if-nothing-installed"])
def test_every_third_party_import_is_declared(ask_installed):
    """Also as if no distribution were installed to ask: the answer may not depend on which extras are."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    declared = _declared([None, *project["optional-dependencies"]])
    imports = _third_party(SOURCES)
    assert {"torch", "numpy"} <= set(imports)
    missing = {name: sorted(files) for name, files in imports.items()
               if not _distributions(name, ask_installed) & declared}
    assert not missing, f"imported but not in pyproject.toml's dependencies or extras: {missing}"


def test_import_names_agree_with_the_installed_distributions():
    """Each ``IMPORT_NAMES`` entry whose import name is installed here names the distribution that provides it."""
    wrong = {name: sorted(_installed()[name]) for name, distribution in IMPORT_NAMES.items()
             if _installed().get(name) and _normalised(distribution) not in _distributions(name)}
    assert not wrong, f"IMPORT_NAMES names the wrong distribution for: {wrong}"


def test_the_core_needs_only_the_base_dependencies():
    base = _declared([None])
    missing = {name: sorted(files) for name, files in _third_party(CORE).items() if not _distributions(name) & base}
    assert not missing, f"the core imports packages outside pyproject.toml's dependencies: {missing}"


# -- the tracker protocol ---------------------------------------------------------------------------


def every_tracker():
    made = [make_tracker(kind) for kind in TRACKER_KINDS]
    return [*made, InPlaceMeanTracker(), TensorLossTracker(), GuardedTracker(), ExactTracker()]


@pytest.mark.parametrize("tracker", every_tracker(), ids=lambda t: t.name)
def test_every_tracker_speaks_the_protocol(tracker):
    assert isinstance(tracker, Tracker) and isinstance(tracker, MetricTracker)
    assert isinstance(tracker.name, str) and isinstance(tracker.accumulator, str)
    assert isinstance(tracker.per_sample_loss, bool) and tracker.state_reductions()


def test_the_protocol_check_refuses_what_is_not_a_tracker():
    class NoMetrics:
        name, accumulator, per_sample_loss = "x", "python", False

        def reset(self):
            pass

        def update(self, loss, outputs, labels):
            pass

        def state_reductions(self):
            return {}

    assert not isinstance(NoMetrics(), Tracker)
    with pytest.raises(ValueError, match=r"trackers\[0\]=.*not a tracker"):
        train(TrainConfig(preset="tiny", epochs=1), [NoMetrics()])
    with pytest.raises(ValueError, match=r"trackers\[0\]='exact': not a tracker.*make_tracker"):
        train(TrainConfig(preset="tiny", epochs=1), ["exact"])


def _tracker_class_names() -> set[str]:
    """Every class in the package that is a tracker: named ``*Tracker`` or derived from one."""
    classes = {}
    for path in SOURCES:
        for node in ast.walk(_tree(path)):
            if isinstance(node, ast.ClassDef):
                classes[node.name] = {base.id if isinstance(base, ast.Name) else getattr(base, "attr", "")
                                      for base in node.bases}
    names = {name for name in classes if name.endswith("Tracker")}
    while True:
        more = {name for name, bases in classes.items() if bases & names} - names
        if not more:
            return names
        names |= more


def _names_in(node: ast.AST) -> set[str]:
    return {n.id if isinstance(n, ast.Name) else n.attr
            for n in ast.walk(node) if isinstance(n, (ast.Name, ast.Attribute))}


def class_probes(source: str, trackers: set[str]) -> list[str]:
    """The calls in ``source`` that ask about a tracker's class or attributes, as written.

    ``isinstance``/``issubclass`` whose class argument names a tracker class, and ``hasattr``
    on anything named like a tracker.
    """
    found = []
    for node in ast.walk(ast.parse(source)):
        if not (isinstance(node, ast.Call) and len(node.args) == 2):
            continue
        called = _called(node)
        if called in ("isinstance", "issubclass") and _names_in(node.args[1]) & trackers or \
                called == "hasattr" and "tracker" in ast.unparse(node.args[0]).lower():
            found.append(ast.unparse(node))
    return found


def test_class_probes_finds_each_kind_of_probe():
    source = ("isinstance(tracker, ExactTracker)\nhasattr(self.trackers[0], 'loss_sum')\n"
              "isinstance(x, (int, IncidentBrokenTracker))\nisinstance(loss, torch.Tensor)\n")
    assert class_probes(source, _tracker_class_names()) == [
        "isinstance(tracker, ExactTracker)", "hasattr(self.trackers[0], 'loss_sum')",
        "isinstance(x, (int, IncidentBrokenTracker))"]


def test_the_trainer_never_asks_a_trackers_class():
    trackers = _tracker_class_names()
    assert {"ExactTracker", "IncidentBrokenTracker", "InPlaceMeanTracker", "RankZeroTracker", "Tracker"} <= trackers
    found = class_probes((PACKAGE / "train.py").read_text(encoding="utf-8"), trackers)
    assert found == ["isinstance(tracker, Tracker)"], f"train.py asks trackers for their class: {found}"


# -- ctypes -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_imports_ctypes(path):
    assert not any(_under(m, "ctypes") for m in imported_modules(path))


@pytest.mark.slow
def test_importing_the_package_loads_no_ctypes_of_its_own(fresh_import):
    """torch loads ctypes itself, so only its first importer can be checked at run time: not the package.

    ``test_no_module_imports_ctypes`` shows that no module of the package imports it at all.
    """
    at = next((index for index, (_, name) in enumerate(fresh_import) if name == "ctypes"), None)
    if at is None:
        return  # not loaded at all
    depth = fresh_import[at][0]
    importer = next(name for level, name in fresh_import[at + 1:] if level < depth)
    assert not _under(importer, "accumbug"), f"{importer} imports ctypes"
