"""Where a value comes from, read statically: losses, the loops that take a step, counts, meters.

The code checks recognise values by their origin, not by their names (``06_check_your_own_run.ipynb``):

* a **loss** is what ``.backward()`` is called on, what a loss function returns (an
  ``nn.*Loss`` instance, ``F.cross_entropy`` and the other ``F.*`` losses, a same-file function
  that returns a loss, a callable whose result is backpropagated: a ``loss_fn`` parameter),
  ``outputs.loss`` or ``outputs["loss"]`` of a call's result, and whatever is derived from one
  (``.item()``, ``float()``, ``.detach()``, ``.cpu()``, ``.data[0]``, ``.tolist()``,
  arithmetic, a sum of them); containers of losses (a dict whose values are backpropagated or
  that is filled with losses, a tensor whose slots are) pass their losses on to ``.items()``,
  ``.values()`` and their slots;
* a **step** is ``.backward()``, an optimizer's ``.step()``, a loss computed, or a forward
  under ``no_grad``; a **step loop** does one directly (not in a nested loop) or calls a
  same-file function that does (``train_step``); Lightning's ``*_step`` methods are step
  functions too;
* a **batch count** counts batches: ``len`` of what a step loop iterates, a ``+= 1``
  counter, the loop's ``enumerate`` index or ``range`` bound; a **sample count** counts
  samples: ``len(y)``, ``x.size(0)``, ``.shape[0]``, ``.numel()``, ``len(loader.dataset)``;
  a number of batches made from one (``math.ceil(len(data) / batch_size)``) counts batches; a
  name of unknown origin such as ``num_batches`` is taken as one too (the one guess by name);
* batches are **provably equal** when the loader drops its last one (``drop_last=True``) or the
  file states a data set size (``torch.randn(2048, ...)``, MNIST's test set) that its batch size
  divides;
* a **meter** is a class of the file whose ``update`` adds its value to a running sum
  (``self.sum += val * n; self.count += n``, or ``+= val`` and ``+= 1``), or forwards keyword
  values to another ``update`` (``metric_logger.update(loss=...)``); what an unweighted meter's
  ``update`` adds is taken as a batch loss, as meters are fed once per batch.

``provenance(src)`` builds the analysis once per parsed file (a few passes over its tree; the
per-batch path and the parents only when a check first asks) and every check shares it.
Everything is intra-file: a helper imported from elsewhere is unknown. Keys are expressions'
source text, shared by the whole file (``loss`` in one function is ``loss`` in another).
"""

from __future__ import annotations

import ast
import re
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property

from .source import Source, called, is_number, keyword, passed_arguments

_LOSS_FUNCTIONS = re.compile(r"(?:^|_)(loss|cross_entropy|binary_cross_entropy(_with_logits)?|kl_div|nll_loss"
                             r"|mse_loss|l1_loss|huber_loss)$")
_FUNCTIONAL = re.compile(r"(torch\.nn\.)?(F|functional)$")  # the module of the F.* losses
_PASS_THROUGH = {"item", "detach", "cpu", "cuda", "tolist", "float", "double", "clone", "to", "numpy", "mean", "sum",
                 "squeeze", "reshape", "view", "half", "bfloat16", "contiguous"}
_REDUCTIONS = {"reduction", "size_average", "reduce"}  # keywords that choose how a loss reduces its batch
_SUMMING = {"sum", "nansum"}  # a sum of per-sample losses: weighted by construction
_OPTIMIZERS = re.compile(r"^(SGD|Adam|AdamW|RMSprop|Adagrad|Adadelta|Adamax|NAdam|RAdam|LBFGS|Lion|LAMB|Adafactor)$"
                         r"|optimi[sz]er", re.IGNORECASE)
_NO_GRAD = {"no_grad", "inference_mode"}
_LOOP_WRAPPERS = {"enumerate", "tqdm", "iter", "zip", "trange", "track"}
_STEP_METHODS = {"training_step", "validation_step", "test_step", "predict_step"}
_SAMPLE_SIZES = {"size", "numel"}  # x.size(0), y.numel(); .shape[0] and len(y) are read apart
_BATCH_COUNT_NAME = re.compile(r"^(n_?|num_?)(batch(es)?|steps|iters)$|^(batches|steps|iters|iterations)$"
                               r"|_(batches|steps|iters)$", re.IGNORECASE)  # a weak fallback: names of unknown origin
_KNOWN_SIZES = {"MNIST": (60_000, 10_000), "FashionMNIST": (60_000, 10_000), "KMNIST": (60_000, 10_000),
                "CIFAR10": (50_000, 10_000), "CIFAR100": (50_000, 10_000)}  # (train, test) images
_WEIGHT_PARAM = re.compile(r"n|num|count|weight|batch_size|size")
_LOOPS = (ast.For, ast.AsyncFor, ast.While)
_FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef)

_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class Meter:
    """A same-file class whose ``update`` keeps a running sum: how it weighs what it is given.

    ``value``: the parameter added to the sum; ``count``: the weight parameter (``None`` if there
    is none) and ``count_default`` its default (``1`` for ``n=1``); ``weighted``: the sum
    multiplies the value (by ``count``, or by a size the meter reads itself); ``forwards``: a
    keyword ``update(**values)`` that hands each value on to another ``update`` without a
    weight (``MetricLogger``); ``node``: the class.
    """

    name: str
    value: str | None
    count: str | None
    count_default: ast.expr | None
    weighted: bool
    forwards: bool
    node: ast.ClassDef

    def counts_batches(self, call: ast.Call) -> bool:
        """Whether ``call`` (an ``update`` of this meter) weighs its value as one batch, whatever its size."""
        if self.forwards or not self.weighted:
            return True
        if self.count is None:
            return False  # the meter weighs by a size it reads itself
        weight = keyword(call, self.count)
        if weight is None and len(call.args) > 1:
            weight = call.args[1]
        if weight is None:
            weight = self.count_default
        return weight is None or is_number(weight) and getattr(weight, "value", None) == 1


def provenance(src: Source) -> Provenance:
    """The value analysis of ``src``, built once and shared by every check."""
    if src not in _CACHE:
        _CACHE[src] = Provenance(src)
    return _CACHE[src]


class Provenance:
    """Losses, step loops, counts and meters of one file. Keys are expressions' source text (``self.loss_sum``)."""

    def __init__(self, src: Source):
        self.src = src
        self.functions: dict[str, list[ast.AST]] = {}
        self.returns: dict[str, list[ast.Return]] = {}  # by function name, nested functions' included
        for func in src.of(*_FUNCTIONS):
            self.functions.setdefault(func.name, []).append(func)
            self.returns.setdefault(func.name, []).extend(
                node for node in ast.walk(func) if isinstance(node, ast.Return) and node.value is not None)
        self.assigned = self._assignments()
        self.parameters = {a.arg for func in src.of(*_FUNCTIONS) for a in func.args.args + func.args.kwonlyargs}
        self.constants = self._constants()
        self.aliases = self._made_functions()
        self.losses: set[str] = set()  # keys holding a loss or a value derived from one
        self.containers: set[str] = set()  # keys of dicts, lists and tensors that hold losses
        self.loss_callables: set[str] = set()  # the source text of functions and modules that return a loss
        self.summed_callables: set[str] = set()  # loss modules built with reduction="sum", functions returning sums
        self.mean_callables: set[str] = set()  # loss modules built with no reduction: they return the batch mean
        self.meters = self._meters()
        self._find_losses()

    # the per-batch path, counts and parents: built when a check first asks (a file without losses never does)

    @cached_property
    def parent(self) -> dict[ast.AST, ast.AST]:
        """Each node's parent."""
        return {child: node for node in self.src.of(*self.src.nodes) for child in ast.iter_child_nodes(node)}

    @cached_property
    def step_functions(self) -> set[str]:
        return self._step_functions()

    @cached_property
    def per_batch_functions(self) -> set[str]:
        """The step functions that run once per batch: Lightning's ``*_step`` methods, those a loop calls, and
        those these call."""
        def callees(bodies) -> set[str]:
            return {self.aliases.get(self.src.unparse(call.func), called(call))
                    for body in bodies for call in self._own_calls(body)}

        found = self.step_functions & (set(_STEP_METHODS) | callees(loop.body for loop in self.src.of(*_LOOPS)))
        for _ in range(8):
            more = self.step_functions & callees(f.body for name in found for f in self.functions[name]) - found
            if not more:
                break
            found |= more
        return found

    @cached_property
    def step_loops(self) -> list[ast.AST]:
        return [loop for loop in self.src.of(*_LOOPS) if self._steps(loop.body, loop)]

    @cached_property
    def counters(self) -> set[str]:
        """Keys incremented by 1 (``batches += 1``, ``n = n + 1``)."""
        return {key for key, value, _ in self.src.additions
                if isinstance(value, ast.Constant) and type(value.value) is int and value.value == 1}

    @cached_property
    def loop_indices(self) -> dict[str, ast.AST]:
        return self._loop_indices()

    # -- assignments and constants ------------------------------------------------------------------

    def _assignments(self) -> dict[str, list[ast.expr]]:
        """Every value assigned to a key (``x = v``, ``self.x: T = v``), in file order. A name unpacked from what
        the file does not spell out part by part (``model, loader = accelerator.prepare(model, loader)``) is
        recorded as made from itself: assigned once more, from a value not known."""
        made: dict[str, list[ast.expr]] = {}
        for node in self.src.of(ast.Assign, ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets if node.value is not None else []:
                if isinstance(target, ast.Tuple) and isinstance(node.value, ast.Tuple) \
                        and len(target.elts) == len(node.value.elts):
                    pairs = zip(target.elts, node.value.elts)
                elif isinstance(target, ast.Tuple):
                    pairs = ((part, part) for part in target.elts if isinstance(part, (ast.Name, ast.Attribute)))
                else:
                    pairs = [(target, node.value)]
                for part, value in pairs:
                    made.setdefault(self.src.unparse(part), []).append(value)
        return made

    def _constants(self) -> dict[str, int]:
        """Whole numbers the file states: ``N = 100`` assigned once, ``add_argument("--bs", default=100)``."""
        found = {key: values[0].value for key, values in self.assigned.items()
                 if len(values) == 1 and isinstance(values[0], ast.Constant) and type(values[0].value) is int}
        for call in self.src.calls("add_argument"):
            flag = next((a.value for a in call.args if isinstance(a, ast.Constant) and str(a.value).startswith("--")),
                        None)
            default = keyword(call, "default")
            if flag and isinstance(default, ast.Constant) and type(default.value) is int:
                found["args." + flag[2:].replace("-", "_")] = default.value
        return found

    def _made_functions(self) -> dict[str, str]:
        """``step = make_train_step(...)`` where ``make_train_step`` returns its inner ``def``: ``{"step": inner}``."""
        made = {}
        for key, values in self.assigned.items():
            value = values[0] if len(values) == 1 else None
            for func in self.functions.get(called(value) or "", []) if isinstance(value, ast.Call) else []:
                inner = {f.name for f in ast.walk(func) if isinstance(f, _FUNCTIONS) and f is not func}
                made.update((key, r.value.id) for r in ast.walk(func) if isinstance(r, ast.Return)
                            and isinstance(r.value, ast.Name) and r.value.id in inner)
        for call in self.src.of(ast.Call):  # a function handed to a same-file function: its parameter names it
            for func in self.functions.get(called(call) or "", []):
                for param, arg in passed_arguments(func, call):
                    name = self.src.unparse(arg)
                    if param is not None and (name in made or name in self.functions):
                        made[param] = made.get(name, name)
        return made

    def whole(self, node: ast.expr | None) -> int | None:
        """The whole number ``node`` is, when the file states it (a literal, a constant, an argument's default)."""
        if isinstance(node, ast.Constant) and type(node.value) is int:
            return node.value
        return self.constants.get(self.src.unparse(node)) if node is not None else None

    def origin(self, node: ast.expr) -> ast.expr:
        """What a name was made from, when it is assigned exactly once (in the file, or in the function that reads
        it); else ``node`` itself."""
        if not isinstance(node, (ast.Name, ast.Attribute)):
            return node
        values = self.assigned.get(self.src.unparse(node), [])
        if len(values) > 1:  # the one made in the same function, as two functions each make their own
            values = [value for value in values if self.src.scope.get(value) is self.src.scope.get(node)]
        return values[0] if len(values) == 1 else node

    # -- losses -------------------------------------------------------------------------------------

    def is_loss(self, node: ast.AST | None) -> bool:
        """Whether ``node`` holds a loss or a value derived from one."""
        if node is None:
            return False
        if isinstance(node, (ast.Name, ast.Attribute, ast.Subscript)) and self.src.unparse(node) in self.losses:
            return True
        if isinstance(node, ast.Attribute):
            return node.attr == "loss" and self._a_result(node.value) or node.attr == "data" \
                and self.is_loss(node.value)
        if isinstance(node, ast.Subscript):
            key = node.slice
            return isinstance(key, ast.Constant) and key.value == "loss" and self._a_result(node.value) \
                or self.src.unparse(node.value) in self.containers or self.is_loss(node.value)
        if isinstance(node, ast.Call):
            return self._returns_loss(node)
        if isinstance(node, ast.BinOp):
            return self.is_loss(node.left) or self.is_loss(node.right)
        if isinstance(node, ast.UnaryOp):
            return self.is_loss(node.operand)
        if isinstance(node, (ast.ListComp, ast.GeneratorExp)):
            return self.is_loss(node.elt) or any(self.is_loss(g.iter) for g in node.generators)
        return False

    def _a_result(self, node: ast.expr) -> bool:
        """``outputs`` in ``outputs.loss``: a call's result (``outputs = model(**batch)``)."""
        return isinstance(node, ast.Call) or isinstance(self.origin(node), ast.Call)

    def _returns_loss(self, call: ast.Call) -> bool:
        func, name = call.func, called(call)
        if self.computes_loss(call):
            return True
        if isinstance(func, ast.Attribute) and name in _PASS_THROUGH:
            return self.is_loss(func.value)
        if name in ("len", "isinstance", "print", "range"):
            return False
        return any(self.is_loss(arg) for arg in call.args)

    def is_summed(self, node: ast.expr, seen: frozenset = frozenset()) -> bool:
        """A loss summed over the batch's samples: ``reduction="sum"``, ``.sum()``, or a module built to sum,
        here or in what a name in ``node`` was made from (``loss = criterion(...)`` then ``loss.item()``)."""
        for inner in ast.walk(node):
            if isinstance(inner, ast.Call) and (called(inner) in _SUMMING and isinstance(inner.func, ast.Attribute)
                                                and not self._batch_mean(inner.func.value)
                                                or _reduces_by_sum(inner)
                                                or self.src.unparse(inner.func) in self.summed_callables):
                return True
            if isinstance(inner, ast.Name) and inner.id not in seen:
                made = self.origin(inner)
                if made is not inner and self.is_summed(made, seen | {inner.id}):
                    return True
        return False

    def _batch_mean(self, node: ast.expr) -> bool:
        """A loss already reduced to its batch mean, so that ``.sum()`` of it weighs nothing: a call of a loss
        module built without ``reduction`` (``nn.BCELoss()``), or of an ``F.*`` loss given none."""
        made = self.origin(node) if isinstance(node, ast.Name) else node
        if not isinstance(made, ast.Call) or _may_reduce_otherwise(made):
            return False
        return self.src.unparse(made.func) in self.mean_callables or self._functional_loss(made.func)

    def _find_losses(self) -> None:
        """Seeds (backpropagated values, loss modules), then assignments followed until nothing changes."""
        self._seed_losses()
        for _ in range(8):
            before = len(self.losses) + len(self.containers) + len(self.loss_callables)
            self._follow_assignments()
            self._follow_loops()
            self._follow_returns()
            if before == len(self.losses) + len(self.containers) + len(self.loss_callables):
                break

    def _seed_losses(self) -> None:
        self.losses.update(meter.value for meter in self.meters.values() if meter.value and not meter.weighted)
        for call in self.src.of(ast.Call):
            name = called(call)
            if name in ("backward", "manual_backward"):
                value = call.args[0] if call.args else getattr(call.func, "value", None)
                self._mark_backpropagated(value)
            elif name and name.endswith("Loss") and name[0].isupper():
                self._mark_loss_module(call)
        for func in self.functions.get("training_step", []):
            for node in ast.walk(func):
                if isinstance(node, ast.Return) and node.value is not None:
                    self._mark_backpropagated(node.value)
        for name, funcs in self.functions.items():  # Lightning 1.x: *_epoch_end(self, outputs) gets the steps' returns
            if name.endswith("_epoch_end") and self._returns_loss_from(name.replace("_epoch_end", "_step")):
                self.containers.update(a.arg for f in funcs for a in f.args.args[1:2])

    def _returns_loss_from(self, name: str) -> bool:
        """Whether the function returns a loss, or a dict holding one (``{"val_loss": loss}``)."""
        returned = [node.value for node in self.returns.get(name, [])]
        return any(self.is_loss(value) or isinstance(value, ast.Dict) and any(map(self.is_loss, value.values))
                   for value in returned)

    def _mark_backpropagated(self, value: ast.expr | None) -> None:
        """``loss`` in ``loss.backward()``, ``scaler.scale(loss / k).backward()``, ``sum(d.values()).backward()``."""
        while True:
            if isinstance(value, ast.Call) and called(value) in ("mean", "sum") and not value.args \
                    and isinstance(value.func, ast.Attribute):
                value = value.func.value
            elif isinstance(value, ast.Call) and called(value) in ("scale", "sum") and value.args:
                value = value.args[0]
            elif isinstance(value, ast.BinOp):
                value = value.left
            elif isinstance(value, (ast.GeneratorExp, ast.ListComp)):
                value = value.generators[0].iter
            elif isinstance(value, ast.Call) and called(value) == "values" and isinstance(value.func, ast.Attribute):
                self.containers.add(self.src.unparse(value.func.value))
                return
            else:
                break
        if isinstance(value, ast.Dict):
            self.losses.update(self.src.unparse(v) for v in value.values if isinstance(v, (ast.Name, ast.Attribute)))
        elif isinstance(value, (ast.Name, ast.Attribute, ast.Subscript)):
            self.losses.add(self.src.unparse(value))

    def _mark_loss_module(self, construction: ast.Call) -> None:
        """``criterion = nn.CrossEntropyLoss(...)``: the names it is assigned to return losses."""
        made = construction  # also nn.CrossEntropyLoss().to(device), .cuda()
        while isinstance(self.parent.get(made), ast.Attribute) and isinstance(self.parent.get(
                self.parent[made]), ast.Call) and self.parent[made].attr in ("to", "cuda"):
            made = self.parent[self.parent[made]]
        statement = self.parent.get(made)
        if isinstance(statement, ast.Assign) and statement.value is made:
            for target in statement.targets:
                self.loss_callables.add(self.src.unparse(target))
                if _reduces_by_sum(construction):
                    self.summed_callables.add(self.src.unparse(target))
                elif not _may_reduce_otherwise(construction):
                    self.mean_callables.add(self.src.unparse(target))

    def _follow_assignments(self) -> None:
        for node in self.src.of(ast.Assign, ast.AugAssign, ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if node.value is None:
                continue
            for target in targets:
                if isinstance(target, ast.Tuple) and isinstance(node.value, ast.Tuple):
                    pairs = zip(target.elts, node.value.elts)
                elif isinstance(target, ast.Tuple) and isinstance(node.value, ast.Call):
                    pairs = self._returned_pairs(target, node.value)
                else:
                    pairs = [(target, node.value)]
                for part, value in pairs:
                    self._mark_assigned(part, value)

    def _mark_assigned(self, target: ast.expr, value: ast.expr) -> None:
        if isinstance(value, ast.Call) and self.src.unparse(target) in self.losses \
                and self._a_passed_callable(value.func) and not any(self.is_loss(arg) for arg in value.args):
            self.loss_callables.add(self.src.unparse(value.func))  # loss = loss_fn(out, y); loss.backward()
        if isinstance(value, ast.Dict) and any(self.is_loss(v) for v in value.values):
            self.containers.add(self.src.unparse(target))
        if not self.is_loss(value):
            return
        self.losses.add(self.src.unparse(target))
        if isinstance(target, ast.Subscript):
            self.containers.add(self.src.unparse(target.value))

    def _a_passed_callable(self, func: ast.expr) -> bool:
        """A callable handed in: a parameter (``loss_fn``) or an attribute (``self.criterion``), not a method."""
        if isinstance(func, ast.Attribute):
            return isinstance(func.value, ast.Name) and func.value.id == "self" and func.attr not in self.functions
        return isinstance(func, ast.Name) and func.id in self.parameters

    def _returned_pairs(self, target: ast.Tuple, call: ast.Call) -> Iterator[tuple[ast.expr, ast.expr]]:
        """``loss, acc = train_step(...)``: each target with the value the same-file function returns there."""
        for node in self.returns.get(called(call) or "", []):
            if isinstance(node.value, ast.Tuple) and len(node.value.elts) == len(target.elts):
                yield from zip(target.elts, node.value.elts)

    def _follow_loops(self) -> None:
        """``for k, v in losses.items()``, ``for v in losses.values()``, ``for v in losses``: ``v`` is a loss."""
        for loop in self.src.of(ast.For, ast.AsyncFor, ast.comprehension):
            iterated, target = loop.iter, loop.target
            if isinstance(iterated, ast.Call) and called(iterated) in ("items", "values") \
                    and isinstance(iterated.func, ast.Attribute):
                holder = iterated.func.value
                if called(iterated) == "items" and isinstance(target, ast.Tuple) and len(target.elts) == 2:
                    target = target.elts[1]
            else:
                holder = iterated
            if self.src.unparse(holder) in self.containers and isinstance(target, ast.Name):
                self.losses.add(target.id)
        for call in self.src.calls("append", "extend", "add"):
            if isinstance(call.func, ast.Attribute) and call.args and self.is_loss(call.args[0]):
                self.containers.add(self.src.unparse(call.func.value))

    def _follow_returns(self) -> None:
        """A same-file function that returns a loss is a loss function (called by name or as ``self.f``); one whose
        every return is summed over the batch (``F.mse_loss(..., reduction="sum") + torch.sum(kl)``) sums too."""
        for name, returned in self.returns.items():
            if name not in self.loss_callables and any(
                    not isinstance(node.value, ast.Tuple) and self.is_loss(node.value) for node in returned):
                self.loss_callables.update((name, "self." + name))
            if name in self.loss_callables and all(self.is_summed(node.value) for node in returned):
                self.summed_callables.update((name, "self." + name))  # every return sums: reduction="sum", torch.sum

    # -- steps --------------------------------------------------------------------------------------

    def _is_step_call(self, call: ast.Call, steppers: set[str]) -> bool:
        name = called(call)
        if name in ("backward", "manual_backward") or name in steppers \
                or self.aliases.get(self.src.unparse(call.func)) in steppers:
            return True
        if name == "step" and isinstance(call.func, ast.Attribute):
            receiver = self.origin(call.func.value)
            text = self.src.unparse(receiver) + " " + " ".join(self.src.unparse(a) for a in call.args)
            return bool(_OPTIMIZERS.search(text)) or isinstance(receiver, ast.Call) and bool(
                _OPTIMIZERS.search(called(receiver) or ""))
        return self.computes_loss(call)

    def computes_loss(self, call: ast.Call) -> bool:
        """A loss function or module called: ``criterion(out, y)``, ``F.cross_entropy(...)``, ``loss_fn(...)``."""
        text = self.src.unparse(call.func)
        return bool({text, called(call), self.aliases.get(text)} & self.loss_callables) \
            or self._functional_loss(call.func)

    def _functional_loss(self, func: ast.expr) -> bool:
        """``F.cross_entropy``, ``torch.nn.functional.mse_loss`` and the other ``F.*`` losses."""
        return isinstance(func, ast.Attribute) and bool(_LOSS_FUNCTIONS.search(func.attr)) \
            and bool(_FUNCTIONAL.match(self.src.unparse(func.value)))

    def _own_calls(self, body: list[ast.stmt]) -> Iterator[ast.Call]:
        """The calls a body makes itself: not in nested loops, functions or classes."""
        stack = list(body)
        while stack:
            node = stack.pop()
            if isinstance(node, ast.Call):
                yield node
            if not isinstance(node, (*_LOOPS, *_FUNCTIONS, ast.ClassDef, ast.Lambda)):
                stack.extend(ast.iter_child_nodes(node))
            elif isinstance(node, _LOOPS):
                stack.append(node.iter if isinstance(node, (ast.For, ast.AsyncFor)) else node.test)

    def _step_functions(self) -> set[str]:
        """Same-file functions that take one step outside any loop of theirs, directly or through another."""
        steppers = set(_STEP_METHODS) & set(self.functions)
        calls = {name: [c for f in funcs for c in self._own_calls(f.body)] for name, funcs in self.functions.items()}
        for _ in range(8):
            found = {name for name, made in calls.items() if name not in steppers
                     and any(self._is_step_call(call, steppers) for call in made)}
            if not found:
                break
            steppers |= found
        return steppers

    def _steps(self, body: list[ast.stmt], loop: ast.AST) -> bool:
        if any(self._is_step_call(call, self.step_functions) for call in self._own_calls(body)):
            return True
        bound = _bound(loop)
        return self._under_no_grad(loop) and any(
            any(isinstance(n, ast.Name) and n.id in bound for a in call.args for n in ast.walk(a))
            for call in self._own_calls(body))

    def _under_no_grad(self, node: ast.AST) -> bool:
        while node in self.parent:
            node = self.parent[node]
            if isinstance(node, (ast.With, ast.AsyncWith)) and any(
                    isinstance(i.context_expr, ast.Call) and called(i.context_expr) in _NO_GRAD for i in node.items):
                return True
            if isinstance(node, _FUNCTIONS):
                return any(_name_of(d.func if isinstance(d, ast.Call) else d) in _NO_GRAD for d in node.decorator_list)
        return False

    def step_of(self, node: ast.AST) -> ast.AST | None:
        """The innermost step loop, or step function, that ``node`` runs in once per batch; else ``None``."""
        while node in self.parent:
            node = self.parent[node]
            if isinstance(node, _LOOPS) and node in self.step_loops:
                return node
            if isinstance(node, _FUNCTIONS):
                return node if node.name in self.per_batch_functions else None
        return None

    def periodic(self, node: ast.AST) -> bool:
        """Whether ``node`` runs only every N steps: under ``if step % log_interval == 0`` in its step loop."""
        while node in self.parent:
            node = self.parent[node]
            if isinstance(node, ast.If) and any(isinstance(n, ast.BinOp) and isinstance(n.op, ast.Mod)
                                                for n in ast.walk(node.test)):
                return True
            if node in self.step_loops or isinstance(node, _FUNCTIONS):
                return False
        return False

    def per_step_bodies(self) -> Iterator[ast.AST]:
        """Every step loop and per-batch function: the code that runs once per batch (``describe`` says which)."""
        yield from self.step_loops
        for name in sorted(self.per_batch_functions):
            yield from self.functions[name]

    def describe(self, step: ast.AST) -> str:
        """How a finding names a step loop or per-batch function."""
        if isinstance(step, _FUNCTIONS):
            return f"`{step.name}`, run once per batch"
        head = step.iter if isinstance(step, (ast.For, ast.AsyncFor)) else step.test
        return f"the per-batch loop over `{self.src.quote(head)}`"

    # -- counts -------------------------------------------------------------------------------------

    def iterated(self, loop: ast.AST) -> ast.expr | None:
        """What a step loop goes through, unwrapped: ``loader`` for ``enumerate(tqdm(loader))`` or ``pbar``."""
        node = getattr(loop, "iter", None)
        return self.unwrapped(node) if node is not None else None

    def unwrapped(self, node: ast.expr) -> ast.expr:
        """``loader`` for ``enumerate(tqdm(loader))``, or for ``pbar`` made by ``pbar = tqdm(loader)``."""
        for _ in range(6):
            if isinstance(node, ast.Call) and called(node) in _LOOP_WRAPPERS and node.args:
                node = node.args[0]
            elif isinstance(node, ast.Name) and self.origin(node) is not node:
                node = self.origin(node)
            else:
                break
        return node

    def is_batch_count(self, node: ast.expr, depth: int = 0) -> bool:
        """Whether ``node`` counts batches: ``len(loader)``, a ``+= 1`` counter, a step loop's index or bound,
        ``math.ceil(len(data) / batch_size)``, also through ``float()``, ``max(n, 1)`` or ``+ 1``."""
        if depth > 4:
            return False
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add) and is_number(node.right):
            return self.is_batch_count(node.left, depth + 1)
        ratio = node.args[0] if isinstance(node, ast.Call) and called(node) == "ceil" and len(node.args) == 1 \
            else node if isinstance(node, ast.BinOp) and isinstance(node.op, ast.FloorDiv) else None
        if isinstance(ratio, ast.BinOp) and isinstance(ratio.op, (ast.Div, ast.FloorDiv)):
            return self.is_sample_count(ratio.left, depth + 1)  # samples / batch size
        if isinstance(node, ast.Call) and called(node) in ("float", "int", "max") and node.args:
            return any(self.is_batch_count(arg, depth + 1) for arg in node.args if not is_number(arg))
        if isinstance(node, ast.Call) and called(node) == "len" and node.args:
            iterated = self.src.unparse(self.unwrapped(node.args[0]))
            return any(iterated == self.src.unparse(self.iterated(loop)) for loop in self.step_loops) \
                or self._a_loader(node.args[0])
        key = self.src.unparse(node)
        if key in self.counters or key in self.loop_indices:
            return True
        made = self.origin(node)
        if made is not node:
            return self.is_batch_count(made, depth + 1)
        return bool(_BATCH_COUNT_NAME.search(key.rsplit(".", 1)[-1])) and not self.is_sample_count(node)

    def _a_loader(self, node: ast.expr) -> bool:
        made = self.origin(node)
        return isinstance(made, ast.Call) and called(made) == "DataLoader"

    def _loop_indices(self) -> dict[str, ast.AST]:
        """The index of every step loop (``i`` of ``enumerate``, ``it`` of ``range(max_iters)``) and the bound of a
        ``range`` it runs over, with the loop."""
        found: dict[str, ast.AST] = {}
        for loop in self.step_loops:
            iterated = getattr(loop, "iter", None)
            if not isinstance(iterated, ast.Call) or not isinstance(loop.target, (ast.Tuple, ast.Name)):
                continue
            first = loop.target.elts[0] if isinstance(loop.target, ast.Tuple) else loop.target
            if called(iterated) == "enumerate" and isinstance(first, ast.Name) and isinstance(loop.target, ast.Tuple):
                found[first.id] = loop
            elif called(iterated) == "range" and isinstance(loop.target, ast.Name):
                found[loop.target.id] = loop
                found[self.src.unparse(iterated.args[-1 if len(iterated.args) < 3 else 1])] = loop
        return found

    def is_sample_count(self, node: ast.expr, depth: int = 0) -> bool:
        """Whether ``node`` counts samples: ``len(y)``, ``x.size(0)``, ``.shape[0]``, ``.numel()``, a sum of them."""
        if depth > 4:
            return False
        for inner in ast.walk(node):
            if isinstance(inner, ast.Call) and called(inner) in _SAMPLE_SIZES \
                    or isinstance(inner, ast.Attribute) and inner.attr in ("shape", "dataset", "num_samples"):
                return True
            if isinstance(inner, ast.Call) and called(inner) == "len" and inner.args \
                    and not self.is_batch_count(inner):
                return True
        key = self.src.unparse(node)
        made = self.origin(node)
        return made is not node and self.is_sample_count(made, depth + 1) or any(
            self.is_sample_count(v, depth + 1) for k, v, _ in self.src.additions if k == key and not is_number(v))

    # -- equal batches ------------------------------------------------------------------------------

    def equal_batches(self, loop: ast.AST) -> bool:
        """Whether every batch of a step loop provably has the same size: ``drop_last=True``, or a dataset size the
        file states that its batch size divides (10,000 test images in batches of 100)."""
        loader = self.origin(self.iterated(loop)) if self.iterated(loop) is not None else None
        if not (isinstance(loader, ast.Call) and called(loader) == "DataLoader"):
            return self.equal_loaders()
        return self.equal_loader(loader)

    def equal_loaders(self) -> bool:
        """Whether the file builds a ``DataLoader`` and every one it builds has provably equal batches."""
        loaders = self.src.calls("DataLoader")
        return bool(loaders) and all(self.equal_loader(call) for call in loaders)

    def equal_loader(self, call: ast.Call) -> bool:
        drop_last = keyword(call, "drop_last")
        if isinstance(drop_last, ast.Constant) and drop_last.value is True:
            return True
        size = self.whole(keyword(call, "batch_size") or (call.args[1] if len(call.args) > 1 else None))
        dataset = self.dataset_size(call.args[0] if call.args else keyword(call, "dataset"))
        return bool(size and dataset and dataset % size == 0)

    def dataset_size(self, node: ast.expr | None) -> int | None:
        """The number of samples a data set holds, when the file states it."""
        made = self.origin(node) if node is not None else None
        if not isinstance(made, ast.Call):
            return None
        name = called(made)
        if name in _KNOWN_SIZES:
            train = keyword(made, "train")
            return _KNOWN_SIZES[name][0 if train is None or getattr(train, "value", True) else 1]
        if name == "TensorDataset" and made.args:
            return self.dataset_size(made.args[0])
        if name == "Subset" and len(made.args) > 1:
            indices = self.origin(made.args[1])
            return self.whole(indices.args[-1]) if isinstance(indices, ast.Call) and called(indices) == "range" \
                and len(indices.args) == 1 else None
        first = made.args[0] if made.args else keyword(made, "size")
        if isinstance(first, ast.Tuple) and first.elts:
            first = first.elts[0]
        return self.whole(first) if name in ("randn", "rand", "zeros", "ones", "empty", "randint", "arange") else None

    # -- meters -------------------------------------------------------------------------------------

    def _meters(self) -> dict[str, Meter]:
        found = {}
        for cls in self.src.of(ast.ClassDef):
            update = next((f for f in cls.body if isinstance(f, _FUNCTIONS) and f.name == "update"), None)
            meter = _meter(self.src, cls, update) if update is not None else None
            if meter is not None:
                found[cls.name] = meter
        return found

    def meter_of(self, receiver: ast.expr) -> Meter | None:
        """The same-file meter class an object was built from (``losses = AverageMeter()``)."""
        made = self.origin(receiver)
        name = called(made) if isinstance(made, ast.Call) else None
        return self.meters.get(name or "")


def _name_of(node: ast.expr) -> str | None:
    return node.attr if isinstance(node, ast.Attribute) else node.id if isinstance(node, ast.Name) else None


def _bound(loop: ast.AST) -> set[str]:
    target = getattr(loop, "target", None)
    return {n.id for n in ast.walk(target) if isinstance(n, ast.Name)} if target is not None else set()


def _may_reduce_otherwise(call: ast.Call) -> bool:
    """The call may choose a reduction other than the batch mean: a ``reduction``-like keyword, or ``**options``."""
    return any(k.arg is None or k.arg in _REDUCTIONS for k in call.keywords)


def _reduces_by_sum(call: ast.Call) -> bool:
    reduction = keyword(call, "reduction")
    return isinstance(reduction, ast.Constant) and reduction.value == "sum" or keyword(call, "size_average") is not None


def _meter(src: Source, cls: ast.ClassDef, update: ast.AST) -> Meter | None:
    """A meter when ``update`` adds its value to an attribute, or forwards ``**kwargs`` values to ``.update(v)``."""
    params = [a.arg for a in update.args.args[1:]]
    defaults = dict(zip(reversed(params), reversed(update.args.defaults)))
    if update.args.kwarg is not None:
        forwards = any(isinstance(n, ast.Call) and called(n) == "update" and len(n.args) == 1 and not n.keywords
                       for n in ast.walk(update))
        return Meter(cls.name, None, None, None, False, True, cls) if forwards else None
    if not params:
        return None
    value = params[0]
    count = next((p for p in params[1:] if _WEIGHT_PARAM.fullmatch(p)), None)
    sums = [node.value for node in ast.walk(update) if isinstance(node, ast.AugAssign)
            and isinstance(node.op, ast.Add) and src.unparse(node.target).startswith("self.")
            and value in {n.id for n in ast.walk(node.value) if isinstance(n, ast.Name)}]
    if not sums:
        return None
    weighted = any(isinstance(n, ast.BinOp) and isinstance(n.op, ast.Mult) for s in sums for n in ast.walk(s))
    return Meter(cls.name, value, count, defaults.get(count) if count else None, weighted, False, cls)
