"""The tracker under probe: its class found from ``path/to/file.py:Class`` or ``module.path:Class``, made with
no arguments (or the literal ones the target gives), and the shape of its calls, recognised by signature.

Three shapes are spoken, the common ones: ``update(val, n=1)`` read through ``.avg`` (the ``AverageMeter`` of
pytorch/examples' ImageNet script, fed ``loss.item()`` and the batch size); ``update(value, weight)`` read
through ``compute()`` (torchmetrics' ``MeanMetric``, and ``accumbug.ExactMean``, fed the batch-mean loss as a
0-dim tensor and the batch size); ``update(loss, outputs, labels)`` read through ``get_metrics()["loss"]``
(this package's ``Tracker`` protocol, fed as the trainer feeds it). Loading the class runs the user's module:
the probe runs only when asked (``doctor --probe``). Described in ``docs/doctor.md`` ("Probe your own tracker").
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..findings import UnusableInput

__all__ = ["SHAPES", "Shape", "Subject", "load_subject"]

TARGET = re.compile(r"(?P<where>.+?):(?P<name>[A-Za-z_]\w*)(?P<call>\(.*\))?", re.DOTALL)
CLASSES = 10  # the outputs' width for the Tracker shape: enough for top-5
SHAPES = {
    "meter": "update({value}, {count}) with .avg (the shape of pytorch/examples' AverageMeter): "
             "fed update(loss.item(), batch size)",
    "metric": "update({value}, {count}) with compute() (the shape of torchmetrics' MeanMetric): "
              "fed update(batch-mean loss as a 0-dim float32 tensor, batch size)",
    "tracker": "update({value}, outputs, labels) with get_metrics()['loss'] (accumbug's Tracker protocol): fed the "
               "batch-mean loss as a 0-dim float32 tensor, outputs [batch, 10] and labels [batch]",
}


@dataclass(frozen=True)
class Shape:
    """How a class is fed and read: ``key`` (of ``SHAPES``), the names of ``update``'s value and count
    parameters (``count`` is None where ``update`` takes no count) and the count's default, if any."""

    key: str
    value: str
    count: str | None
    count_default: object = inspect.Parameter.empty

    @property
    def words(self) -> str:
        count = self.count if self.count_default is inspect.Parameter.empty else f"{self.count}={self.count_default!r}"
        text = SHAPES[self.key].format(value=self.value, count=count or "")
        return text.replace(f"{self.value}, )", f"{self.value})") if self.count is None else text

    @property
    def count_optional(self) -> bool:
        """Whether ``update(value)`` alone is a call the class accepts: its count has a default."""
        return self.count is not None and self.count_default is not inspect.Parameter.empty


@dataclass
class Subject:
    """A class under probe: ``make()`` a fresh instance, ``feed`` one batch, ``read`` the epoch value as returned."""

    target: str
    cls: type
    args: tuple
    kwargs: dict
    shape: Shape
    _batches: dict = field(default_factory=dict)  # batch size -> (outputs, labels), made once

    def make(self):
        return self.cls(*self.args, **self.kwargs)

    def feed(self, tracker, mean: float, size: int, counted: bool = True) -> None:
        """One batch of ``size`` samples whose mean loss is ``mean``; ``counted=False``: ``update(value)`` alone."""
        if self.shape.key == "meter":
            tracker.update(*((mean, size) if counted and self.shape.count else (mean,)))
            return
        loss = torch.tensor(mean, dtype=torch.float32)
        if self.shape.key == "metric":
            tracker.update(*((loss, size) if counted else (loss,)))
        else:
            tracker.update(loss, *self._outputs(size))

    def _outputs(self, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        if size not in self._batches:
            generator = torch.Generator().manual_seed(size)
            self._batches[size] = (torch.randn(size, CLASSES, generator=generator),
                                   torch.randint(CLASSES, (size,), generator=generator))
        return self._batches[size]

    def read(self, tracker):
        """The epoch value as the class hands it out: ``.avg``, ``compute()`` or ``get_metrics()['loss']``."""
        if self.shape.key == "meter":
            return tracker.avg
        if self.shape.key == "metric":
            return tracker.compute()
        return tracker.get_metrics()["loss"]

    def counts(self, tracker) -> dict:
        """What the tracker says it counted besides the value (``get_metrics()``'s other entries), if it says."""
        metrics = tracker.get_metrics() if callable(getattr(tracker, "get_metrics", None)) else {}
        return metrics if isinstance(metrics, dict) else {}

    @property
    def source(self) -> tuple[str, int | None]:
        """The file and line where the class is defined, for the findings (the target where unknown)."""
        try:
            path = Path(inspect.getsourcefile(self.cls) or "")
            line = inspect.getsourcelines(self.cls)[1]
        except (OSError, TypeError):
            return self.target, None
        try:  # written with / on every system, as the doctor's other reports and GitHub's annotations write it
            return path.resolve().relative_to(Path.cwd().resolve()).as_posix(), line
        except ValueError:
            return path.as_posix(), line


def _split(target: str) -> tuple[str, str, tuple, dict]:
    """``where``, the class name and the literal arguments of ``where:Class`` or ``where:Class(k=v, ...)``."""
    found = TARGET.fullmatch(target.strip())
    if not found:
        raise UnusableInput(f"probe {target!r}: expected path/to/file.py:ClassName or module.path:ClassName")
    if not found["call"]:
        return found["where"], found["name"], (), {}
    try:
        call = ast.parse(f"_{found['call']}", mode="eval").body
        args = tuple(ast.literal_eval(node) for node in call.args)
        kwargs = {node.arg: ast.literal_eval(node.value) for node in call.keywords}
    except (SyntaxError, ValueError, AttributeError):
        raise UnusableInput(f"probe {target!r}: the arguments {found['call']} must be Python literals, "
                            "such as (accumulator='float16')") from None
    if None in kwargs:
        raise UnusableInput(f"probe {target!r}: the arguments {found['call']} must be Python literals, no **")
    return found["where"], found["name"], args, kwargs


def _run_file(path: Path, target: str):
    """Import the file as a module of its own, its folder first on ``sys.path`` (for its own imports)."""
    if not path.is_file():
        raise UnusableInput(f"probe {target!r}: no such file {path}")
    name = f"accumbug_probe_{path.stem}_{abs(hash(str(path.resolve()))):x}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look the module up there
    sys.path.insert(0, str(path.resolve().parent))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(path.resolve().parent))
    return module


def _module(where: str, target: str):
    """The module that holds the class: a file (``.py``, or any path with a folder in it) or a module path."""
    is_file = where.endswith(".py") or "/" in where or "\\" in where
    try:
        return _run_file(Path(where), target) if is_file else importlib.import_module(where)
    except UnusableInput:
        raise
    except ModuleNotFoundError as error:
        raise UnusableInput(f"probe {target!r}: no module named {error.name!r}") from None
    except (Exception, SystemExit) as error:  # noqa: BLE001 - the user's module failed: say so in one line
        raise UnusableInput(f"probe {target!r}: importing {where} raised {type(error).__name__}: {error}") from None


def _class(module, name: str, target: str) -> type:
    cls = getattr(module, name, None)
    if not inspect.isclass(cls):
        names = getattr(module, "__all__", None) or [n for n in vars(module) if not n.startswith("_")]
        classes = sorted(n for n in names if inspect.isclass(getattr(module, n, None)))
        raise UnusableInput(f"probe {target!r}: no class {name} there; its classes: "
                            f"{', '.join(classes) or 'none'}")
    return cls


def _instance_check(cls: type, args: tuple, kwargs: dict, target: str) -> None:
    """Refuse a class that needs arguments the target does not give, naming them."""
    try:
        inspect.signature(cls).bind(*args, **kwargs)
    except TypeError as error:
        needed = [p.name for p in inspect.signature(cls).parameters.values()
                  if p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
                  and p.name not in kwargs]
        hint = f"; give them as {target.split('(')[0]}({', '.join(f'{n}=...' for n in needed)})" if needed else ""
        raise UnusableInput(f"probe {target!r}: {cls.__name__} needs arguments: "
                            f"{', '.join(needed) or error}{hint}") from None
    except ValueError:  # no signature to read (a builtin): try the call itself
        pass


def _positional(function) -> list[inspect.Parameter]:
    """``function``'s parameters that a positional argument fills (a bound method's: ``self`` left out)."""
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return []
    return [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]


def _shape(tracker, target: str) -> Shape:
    """The shape ``tracker`` speaks, by its methods and ``update``'s signature; ``UnusableInput`` when none."""
    name = type(tracker).__name__
    missing = [method for method in ("update", "reset") if not callable(getattr(tracker, method, None))]
    if missing:
        raise UnusableInput(f"probe {target!r}: {name} has no {' and no '.join(f'{m}()' for m in missing)}; "
                            "the probe feeds a tracker through update() and reset()")
    update = tracker.update
    params = _positional(update)
    if callable(getattr(tracker, "compute", None)) and len(params) >= 2:
        return Shape("metric", params[0].name, params[1].name, params[1].default)
    if callable(getattr(tracker, "get_metrics", None)) and len(params) >= 3:
        return Shape("tracker", params[0].name, None)
    if "avg" in dir(tracker) and params:  # dir, not hasattr: a property .avg may raise while empty
        count = params[1] if len(params) >= 2 else None
        return Shape("meter", params[0].name, count and count.name,
                     count.default if count else inspect.Parameter.empty)
    known = "; ".join(words.split(":")[0].format(value="value", count="n") for words in SHAPES.values())
    raise UnusableInput(f"probe {target!r}: {name} has update({', '.join(p.name for p in params)}) but speaks "
                        f"none of the shapes the probe knows: {known}")


def load_subject(target: str) -> Subject:
    """The class named by ``target``, checked to be made and fed; ``UnusableInput`` (one line) when it cannot be."""
    where, name, args, kwargs = _split(target)
    cls = _class(_module(where, target), name, target)
    _instance_check(cls, args, kwargs, target)
    try:
        tracker = cls(*args, **kwargs)
    except Exception as error:  # noqa: BLE001 - the user's constructor: any error it raises is the reason it cannot be probed
        raise UnusableInput(f"probe {target!r}: {name}() raised {type(error).__name__}: {error}") from None
    return Subject(target, cls, args, kwargs, _shape(tracker, target))
