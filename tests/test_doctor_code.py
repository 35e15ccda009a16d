"""The doctor's static checks of training code (``accumbug.doctor.code``).

* the corpus (``tests/doctor_corpus/code/``): every script under ``<code>/`` gives a finding
  with that code, on the line it marks with ``# finding: <code>`` where it marks one, and no
  other code unless its top comment says ``# also: <code>``; every script under ``clean/``
  gives no finding at all (so ``benchmarks/doctor_corpus_score.py`` counts every hit and no
  false alarm); each code has a tutorial loop, a meter class and a Lightning module;
* the package's own specimens are caught, and its reference core gives no error;
* one snippet per spelling of each habit, and its look-alikes that are right;
* notebooks: code cells joined, magics read as ``pass``, lines and cells named;
* unusable input: not Python, not a notebook;
* speed: 100 scripts in well under 5 s.
"""

from __future__ import annotations

import ast
import contextlib
import itertools
import json
import re
import textwrap
from pathlib import Path

import pytest

from accumbug.doctor.code import CHECKS, check_notebook, check_python
from accumbug.doctor.code.source import QUOTE_CHARS
from accumbug.doctor.findings import FINDING_CODES, UnusableInput

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "tests" / "doctor_corpus" / "code"
PACKAGE = ROOT / "src" / "accumbug"
ERRORS = {code for code, entry in FINDING_CODES.items() if entry.severity == "error"}
SCRIPTS = (".py", ".ipynb")
SPECIMENS = sorted(p for p in CORPUS.glob("*/*") if p.suffix in SCRIPTS and p.parent.name != "clean")
CLEAN = sorted(p for p in (CORPUS / "clean").glob("*") if p.suffix in SCRIPTS)


def _check(path: Path):
    text = path.read_text(encoding="utf-8")
    return (check_notebook if path.suffix == ".ipynb" else check_python)(text, str(path))


def _declared_also(path: Path) -> set[str]:
    """The codes a corpus file's top comment declares besides its folder's: ``# also: code, code``."""
    found = re.search(r"#\s*also:\s*([a-z, -]+)", path.read_text(encoding="utf-8"))
    return {code.strip() for code in found[1].split(",")} if found else set()


def _name(path: Path) -> str:
    return str(path.relative_to(CORPUS))


def _codes(source: str) -> set[str]:
    return {finding.code for finding in check_python(textwrap.dedent(source), "snippet.py")}


# -- the corpus -------------------------------------------------------------------------------------


def test_every_code_check_has_a_corpus_folder_in_three_styles():
    assert set(CHECKS) <= set(FINDING_CODES)
    for code in CHECKS:
        names = {p.name for p in (CORPUS / code).glob("*.py")}
        assert {"tutorial.py", "meter.py", "lightning.py"} <= names, f"{code}: {sorted(names)}"
    assert len([p for p in CLEAN if p.suffix == ".py"]) >= 5
    assert any(p.suffix == ".ipynb" for p in CLEAN) and any(p.suffix == ".ipynb" for p in SPECIMENS)


@pytest.mark.parametrize("path", SPECIMENS, ids=_name)
def test_a_specimen_gives_its_code_and_no_other_undeclared_code(path):
    """Every hit and no false alarm, as benchmarks/doctor_corpus_score.py counts them (info codes included)."""
    code = path.parent.name
    found = {finding.code for finding in _check(path)}
    assert code in found, f"{_name(path)}: expected {code}, found {sorted(found)}"
    undeclared = found - {code} - _declared_also(path)
    assert not undeclared, f"{_name(path)}: also {sorted(undeclared)}, not declared in its top comment"


def _marked_lines(path: Path) -> set[tuple[str, int]]:
    """``(code, line)`` for each line a corpus script marks with ``# finding: <code>``: where the finding must be."""
    lines = path.read_text(encoding="utf-8").splitlines()
    marks = ((number, re.search(r"#\s*finding:\s*([a-z-]+)", line)) for number, line in enumerate(lines, 1))
    return {(mark[1], number) for number, mark in marks if mark}


@pytest.mark.parametrize("path", [p for p in SPECIMENS if p.suffix == ".py" and _marked_lines(p)], ids=_name)
def test_a_specimen_gives_its_code_on_the_line_it_marks(path):
    """The line that makes the wrong value (the epoch's division, the meter's read), not a print inside the loop."""
    found = {(finding.code, finding.line) for finding in _check(path)}
    missing = _marked_lines(path) - found
    assert not missing, f"{_name(path)}: expected {sorted(missing)}, found {sorted(found)}"


@pytest.mark.parametrize("path", CLEAN, ids=_name)
def test_a_clean_script_gives_no_finding(path):
    findings = _check(path)
    assert findings == [], "\n".join(f"{f.line}: {f.code}: {f.evidence}" for f in findings)


@pytest.mark.parametrize("path", [p for p in SPECIMENS if p.suffix == ".py"], ids=_name)
def test_a_finding_names_the_line_of_the_code_it_quotes(path):
    lines = path.read_text(encoding="utf-8").splitlines()
    findings = _check(path)
    assert findings, "a specimen gives at least one finding"
    for finding in findings:
        quoted = re.match(r"`([^`]+)`", finding.evidence)[1]
        assert quoted[:20] in lines[finding.line - 1], f"line {finding.line}: {lines[finding.line - 1]!r} vs {quoted!r}"


@pytest.mark.parametrize("path", SPECIMENS, ids=_name)
def test_a_finding_quotes_briefly_and_says_what_goes_wrong(path):
    findings = _check(path)
    assert findings, "a specimen gives at least one finding"
    for finding in findings:
        assert finding.path == str(path) and finding.fix == FINDING_CODES[finding.code].fix
        assert all(len(quote) <= QUOTE_CHARS for quote in re.findall(r"`([^`]+)`", finding.evidence))
        assert len(finding.consequence) > 40
        if finding.code == "host-sync-per-step":
            assert finding.severity == "info" and "costs time, not a wrong value" in finding.consequence


# -- the package's own code -------------------------------------------------------------------------


def _package(relative: str):
    path = PACKAGE / relative
    return path.read_text(encoding="utf-8").splitlines(), check_python(path.read_text(encoding="utf-8"), str(path))


def test_the_incident_fixed_tracker_is_a_mean_of_batch_means():
    """Found at the division that makes the epoch's loss; the evidence names the line that adds the batch mean."""
    lines, findings = _package("specimens/incident_trackers.py")
    fixed = next(i for i, line in enumerate(lines, 1) if "self.loss_sum += loss  #" in line)
    divided = next(i for i, line in enumerate(lines, 1) if "loss = self.loss_sum / self.total" in line)
    assert [(f.code, f.line) for f in findings if f.code in ERRORS] == [("mean-of-batch-means", divided)]
    assert f"`self.loss_sum += loss` (line {fixed})" in findings[0].evidence


def test_the_incident_serialisers_are_lossy():
    lines, findings = _package("specimens/serialisers.py")
    caught = {lines[f.line - 1].strip() for f in findings if f.code == "lossy-serialiser"}
    assert "return value if not isinstance(value, float) or math.isfinite(value) else 0.0" in caught  # incident's
    assert any("nan_to_num" in line for line in caught)
    assert "return value if isinstance(value, (int, float)) and math.isfinite(value) else 0.0" in caught  # broad


def test_the_in_place_mean_hands_out_its_zeroed_buffer():
    lines, findings = _package("specimens/gallery_trackers.py")
    aliased = [f for f in findings if f.code == "aliased-state"]
    assert len(aliased) == 1 and '"loss": self.mean' in lines[aliased[0].line - 1]
    assert "self.mean.zero_()" in aliased[0].evidence


@pytest.mark.parametrize("relative", ["trackers.py", "history.py"])
def test_the_reference_core_gives_no_error(relative):
    _, findings = _package(relative)
    assert not [f for f in findings if f.severity == "error"]


# -- each habit, spelled several ways, and what looks like it but is right --------------------------

LOOP = """
import torch
criterion = torch.nn.CrossEntropyLoss()
for x, y in train_loader:
    loss = criterion(model(x), y)
    {add}
{divide}
"""

CASES = {
    # mean-of-batch-means
    "len-loader": (LOOP.format(add="running_loss += loss.item()", divide="print(running_loss / len(train_loader))"),
                   {"mean-of-batch-means"}),
    "divide-in-place": (LOOP.format(add="epoch_loss += loss.detach()", divide="epoch_loss /= len(train_loader)"),
                        {"mean-of-batch-means"}),
    "batch-counter": (LOOP.format(add="total += loss\n    n += 1", divide="mean = total / n"),
                      {"mean-of-batch-means"}),
    "num-batches": (LOOP.format(add="total_loss = total_loss + loss.item()", divide="avg = total_loss / num_batches"),
                    {"mean-of-batch-means"}),
    "enumerate-index": ("""
        criterion = nn.CrossEntropyLoss()
        for i, (x, y) in enumerate(loader):
            running_loss += criterion(model(x), y).item()
            print(running_loss / (i + 1))
        """, {"mean-of-batch-means"}),
    "np-mean": (LOOP.format(add="batch_losses.append(loss.item())", divide="epoch = np.mean(batch_losses)"),
                {"mean-of-batch-means"}),
    "statistics-mean": (LOOP.format(add="losses.append(float(loss))", divide="epoch = statistics.mean(losses)"),
                        {"mean-of-batch-means"}),
    "sum-over-len": (LOOP.format(add="losses.append(loss.item())", divide="epoch = sum(losses) / len(losses)"),
                     {"mean-of-batch-means"}),
    "tensor-mean": (LOOP.format(add="losses.append(loss.detach())", divide="epoch = torch.tensor(losses).mean()"),
                    {"mean-of-batch-means"}),
    "weighted-by-size": (LOOP.format(add="running_loss += loss.item() * x.size(0)",
                                     divide="print(running_loss / len(train_loader.dataset))"), set()),
    "weighted-by-len": (LOOP.format(add="total += loss.item() * len(y)\n    n += len(y)", divide="mean = total / n"),
                        set()),
    "summed-losses": (LOOP.format(add="test_loss += F.nll_loss(out, y, reduction='sum').item()",
                                  divide="test_loss /= len(train_loader.dataset)"), set()),
    "sum-of-a-functional-batch-mean": (LOOP.format(add="test_loss += F.cross_entropy(out, y).sum().item()",
                                                   divide="test_loss /= len(train_loader.dataset)"),
                                       {"mean-of-batch-means"}),
    "sum-of-a-module-batch-mean": (LOOP.format(add="test_loss += loss.sum().item()",
                                               divide="test_loss /= len(train_loader.dataset)"),
                                   {"mean-of-batch-means"}),
    "sum-of-per-sample-losses": (LOOP.format(add="test_loss += F.cross_entropy(out, y, reduction='none').sum().item()",
                                             divide="test_loss /= len(train_loader.dataset)"), set()),
    "sum-of-a-module-built-with-options": (LOOP.replace("CrossEntropyLoss()", "CrossEntropyLoss(**options)").format(
        add="test_loss += loss.sum().item()", divide="test_loss /= len(train_loader.dataset)"), set()),
    "drop-last": ("train_loader = DataLoader(data, batch_size=64, drop_last=True)\n"
                  + LOOP.format(add="running_loss += loss.item()", divide="print(running_loss / len(train_loader))"),
                  set()),
    "loss-named-l": ("""
        for X, y in train_iter:
            l = loss_fn(net(X), y)
            l.backward()
            total += float(l)
            n += 1
        print(total / n)
        """, {"mean-of-batch-means"}),
    "outputs-loss": ("""
        for batch in loader:
            outputs = model(**batch)
            outputs.loss.backward()
            total += outputs.loss.item()
        print(total / len(loader))
        """, {"mean-of-batch-means"}),
    "batch-means-over-samples": (LOOP.format(add="running_loss += loss.item()",
                                             divide="print(running_loss / len(train_loader.dataset))"),
                                 {"mean-of-batch-means"}),
    "imported-meter-without-n": ("""
        losses = AverageMeter()
        for x, y in loader:
            loss = F.cross_entropy(model(x), y)
            losses.update(loss.item())
        print(losses.avg)
        """, {"mean-of-batch-means"}),
    "imported-meter-with-n": ("""
        losses = AverageMeter()
        for x, y in loader:
            loss = F.cross_entropy(model(x), y)
            losses.update(loss.item(), x.size(0))
        print(losses.avg)
        """, set()),
    "dict-update-is-not-a-meter": ("""
        logs = {}
        for x, y in loader:
            loss = F.cross_entropy(model(x), y)
            logs.update(loss=loss.item())
        """, set()),
    "periodic-window-print": ("""
        for i, (x, y) in enumerate(loader):
            loss = F.cross_entropy(model(x), y)
            running_loss += loss.item()
            if i % 2000 == 1999:
                print(running_loss / 2000)
                running_loss = 0.0
        """, set()),
    "a-loss-by-name-only": ("for x, y in loader:\n    total_loss += compute(x, y)\nprint(total_loss / len(loader))\n",
                            set()),
    "accumulation-steps-is-no-weight": ("""
        args = parser.parse_args()
        for step, batch in enumerate(train_dataloader):
            loss = model(**batch).loss / args.gradient_accumulation_steps
            accelerator.backward(loss)
            total_loss += loss.detach().float() * args.gradient_accumulation_steps
        train_loss = total_loss.item() / len(train_dataloader)
        """, {"mean-of-batch-means"}),
    "weighted-by-the-configured-batch-size": ("BATCH = 64\n" + LOOP.format(
        add="running_loss += loss.item() * BATCH", divide="print(running_loss / len(train_loader.dataset))"),
        {"mean-of-batch-means"}),
    "batches-from-ceil": (LOOP.format(add="running_loss += loss.item()", divide=(
        "num_batches = math.ceil(len(train_set) / batch_size)\nprint(running_loss / num_batches)")),
        {"mean-of-batch-means"}),
    "counter-kept-above-zero": (LOOP.format(add="total += loss.item()\n    steps += 1",
                                            divide="print(total / max(steps, 1))"), {"mean-of-batch-means"}),
    "mean-of-per-sample-losses": ("losses = [criterion(o, y) for o, y in pairs]\nbatch = torch.stack(losses).mean()\n",
                                  set()),
    # half-precision-accumulator
    "float16-sum": ("total = torch.zeros(1, dtype=torch.float16)\nfor b in batches:\n    total += b.loss * b.n\n",
                    {"half-precision-accumulator"}),
    "bfloat16-sum": ("s = torch.tensor(0.0, dtype=torch.bfloat16, device='cpu')\ns.add_(loss)\n",
                     {"half-precision-accumulator"}),
    "half-call": ("acc = torch.zeros(()).half()\nfor b in data:\n    acc += b\n", {"half-precision-accumulator"}),
    "add-state": (("class M(Metric):\n    def __init__(self):\n"
                   "        self.add_state('s', default=torch.tensor(0.0, dtype=torch.half), dist_reduce_fx='sum')\n"),
                  {"half-precision-accumulator"}),
    "like-outputs-under-autocast": ("""
        with torch.autocast("cuda"):
            out = model(x)
        buffer = torch.zeros_like(out[0, 0])
        buffer += loss.detach()
        """, {"half-precision-accumulator"}),
    "dtype-of-logits-under-autocast": ("""
        scaler = torch.cuda.amp.GradScaler()
        s = torch.zeros((), dtype=logits.dtype)
        s += loss
        """, {"half-precision-accumulator"}),
    "half-model-loss": (("model = Net().half()\ncriterion = nn.MSELoss()\ntotal = 0.0\nfor x, y in pairs:\n"
                         "    total += criterion(model(x), y)\n"), {"half-precision-accumulator"}),
    "like-outputs-without-autocast": ("buffer = torch.zeros_like(out[0, 0])\nbuffer += loss\n", set()),
    "autocast-float64-sum": ("""
        with torch.autocast("cuda", dtype=torch.float16):
            out = model(x)
        s = torch.zeros((), dtype=torch.float64)
        s += loss.detach().double()
        """, set()),
    "half-model-item": (("model.half()\ncriterion = nn.MSELoss()\ntotal = 0.0\nfor x, y in pairs:\n"
                         "    total += criterion(model(x), y).item()\n"), set()),
    "half-model-float32-sum": (("model.half()\ncriterion = nn.MSELoss()\ntotal = torch.zeros(())\n"
                                "for x, y in pairs:\n    total += criterion(model(x), y)\n"), set()),
    # lossy-serialiser
    "isfinite-zero": ("clean = [v if math.isfinite(v) else 0.0 for v in values]\n", {"lossy-serialiser"}),
    "isnan-zero": ("clean = {k: 0 if np.isnan(v) else v for k, v in row.items()}\n", {"lossy-serialiser"}),
    "isinf-big": ("v = -1e9 if torch.isinf(v) else v\n", {"lossy-serialiser"}),
    "not-float-zero": ("def fix(v):\n    return v if isinstance(v, float) else 0.0\n", {"lossy-serialiser"}),
    "torch-nan-to-num": ("loss = torch.nan_to_num(F.cross_entropy(out, y))\n", {"lossy-serialiser"}),
    "nan-to-num-written": ("row = np.nan_to_num(np.array(values))\nwriter.writerow(row)\n", {"lossy-serialiser"}),
    "nan-to-num-kept-in-a-written-history": (("history = {'acc': []}\nhistory['acc'].append(np.nan_to_num(acc))\n"
                                              "json.dump(history, handle)\n"), {"lossy-serialiser"}),
    "nan-to-num-kept-in-features": ("feats = []\nfor x in raw:\n    feats.append(np.nan_to_num(x))\nmodel(feats)\n",
                                    set()),
    "nan-to-num-on-inputs": ("features = np.nan_to_num(raw)\nout = model(torch.tensor(features))\n", set()),
    "default-lambda": ("json.dumps(history, default=lambda o: 0.0)\n", {"lossy-serialiser"}),
    "return-zero-for-types": ("""
        def sanitise(value):
            if not isinstance(value, (int, float)):
                return 0.0
            return value
        """, {"lossy-serialiser"}),
    "return-zero-when-float-fails": ("""
        def as_number(value):
            try:
                return float(value)
            except Exception:
                return 0
        """, {"lossy-serialiser"}),
    "zero-for-another-type-of-a-property": ("def dims(v):\n    return v.dim() if isinstance(v, torch.Tensor) else 0\n",
                                            set()),
    "none-for-nonfinite": ("clean = [v if math.isfinite(v) else None for v in values]\n", set()),
    "strict-writer": ("json.dump(history, handle, allow_nan=False)\n", set()),
    "raise-on-nonfinite": ("def check(v):\n    if not math.isfinite(v):\n        raise ValueError(v)\n    return 0\n",
                           set()),
    "default-str": ("json.dumps(history, default=str)\n", set()),
    "guard-on-count": (("def mean(self):\n    if self.count == 0:\n        return 0.0\n"
                        "    return self.sum / self.count\n"), set()),
    # aliased-state
    "append-zeroed-attribute": ("""
        class Meter:
            def reset(self):
                self.avg.zero_()
        history["loss"].append(meter.avg)
        """, {"aliased-state"}),
    "append-filled-in-dict": ("""
        tracker.loss_sum.fill_(0)
        history.append({"loss": tracker.loss_sum, "epoch": epoch})
        """, {"aliased-state"}),
    "append-slice-cleared-list": ("""
        class Tracker:
            def reset(self):
                self.values[:] = []
        runs.append(tracker.values)
        """, {"aliased-state"}),
    "append-deleted-list": ("del batch_losses[:]\nepochs.append(batch_losses)\n", {"aliased-state"}),
    "return-zeroed-buffer": ("""
        class Mean:
            def reset(self):
                self.mean.zero_()
            def get_metrics(self):
                return {"loss": self.mean}
        """, {"aliased-state"}),
    "append-float": ("meter.avg.zero_()\nhistory.append(float(meter.avg))\n", set()),
    "append-item": ("meter.avg.zero_()\nhistory.append(meter.avg.item())\n", set()),
    "append-clone": ("meter.avg.zero_()\nhistory.append(meter.avg.clone())\n", set()),
    "append-reassigned": ("class M:\n    def reset(self):\n        self.avg = 0\nhistory.append(meter.avg)\n", set()),
    "return-cleared-cache": ("""
        class Index:
            def invalidate(self):
                self._cache.clear()
            def lookup(self):
                return self._cache
        """, set()),
    "return-converted": ("""
        class Mean:
            def reset(self):
                self.mean.zero_()
            def get_metrics(self):
                return {"loss": self.mean.item()}
        """, set()),
    # read-after-reset
    "reset-then-compute": ("acc.reset()\nwandb.log({'acc': acc.compute()})\n", {"read-after-reset"}),
    "reset-then-avg-in-loop": ("""
        for epoch in range(3):
            for x, y in loader:
                meter.update(x, y)
            meter.reset()
            history.append(meter.avg)
        """, {"read-after-reset"}),
    "compute-then-reset": ("history.append(acc.compute())\nacc.reset()\n", set()),
    "reset-update-read": ("""
        for epoch in range(3):
            tracker.reset()
            for x, y in loader:
                tracker.update(x, y)
            history.append(tracker.get_metrics())
        """, set()),
    "reset-then-forward": ("acc.reset()\nacc(preds, y)\nprint(acc.compute())\n", set()),
    "reset-then-move": ("metric.reset()\nmetric.to(device)\n", set()),
    "reset-then-configure": ("meter.reset()\nmeter.avg = 0.0\nprint(meter.name)\n", set()),
    "self-reset-in-init": ("class Meter:\n    def __init__(self):\n        self.reset()\n        print(self.avg)\n",
                           set()),
    # unreduced-across-ranks
    "rank-zero-print": ("""
        dist.init_process_group("nccl")
        model = DDP(model)
        for x, y in loader:
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            epoch_loss += loss.detach() * len(y)
        if dist.get_rank() == 0:
            print(f"loss {epoch_loss}")
        """, {"unreduced-across-ranks"}),
    "main-process-log": ("""
        sampler = DistributedSampler(data, drop_last=True)
        for x, y in DataLoader(data, sampler=sampler):
            loss = F.mse_loss(model(x), y)
            loss.backward()
            loss_sum += loss.item() * len(y)
            seen += len(y)
        if accelerator.is_main_process:
            wandb.log({"train_loss": loss_sum / seen})
        """, {"unreduced-across-ranks"}),
    "lightning-ddp-on-epoch": ("""
        class M(LightningModule):
            def training_step(self, batch, i):
                self.log("loss", loss, on_epoch=True, sync_dist=False)
        trainer = Trainer(strategy="ddp_find_unused_parameters_true", devices=8)
        """, {"unreduced-across-ranks"}),
    "lightning-ddp-validation-default": ("""
        class M(LightningModule):
            def validation_step(self, batch, i):
                self.log_dict({"val_loss": loss})
        trainer = Trainer(strategy=DDPStrategy(), devices=8)
        """, {"unreduced-across-ranks"}),
    "rank-zero-reduced": ("""
        dist.init_process_group("nccl")
        dist.all_reduce(sums)
        if rank == 0:
            print(f"loss {sums[0] / sums[1]}")
        """, set()),
    "rank-zero-no-ddp": ("if rank == 0:\n    print(loss)\n", set()),
    "rank-zero-checkpoint": ("""
        model = DDP(model)
        if rank == 0:
            torch.save(model.state_dict(), "checkpoint.pt")
        """, set()),
    "lightning-step-only": ("""
        class M(LightningModule):
            def training_step(self, batch, i):
                self.log("loss", loss)
        trainer = Trainer(strategy="ddp")
        """, set()),
    "lightning-metric-object": ("""
        class M(LightningModule):
            def validation_step(self, batch, i):
                self.val_acc(preds, y)
                self.log("val_acc", self.val_acc)
        trainer = Trainer(strategy="ddp")
        """, set()),
    "lightning-one-device": ("""
        class M(LightningModule):
            def validation_step(self, batch, i):
                self.log("val_loss", loss)
        trainer = Trainer(devices=1)
        """, set()),
    # padded-duplicates-counted
    "padded-counts-reduced": ("""
        sampler = DistributedSampler(val_set, shuffle=False)
        for x, y in DataLoader(val_set, sampler=sampler):
            loss_sum += F.cross_entropy(model(x), y, reduction="sum")
            total += y.shape[0]
        dist.all_reduce(total)
        """, {"padded-duplicates-counted"}),
    "lightning-sync-dist": ("""
        class M(LightningModule):
            def validation_step(self, batch, i):
                self.log("val_loss", loss, sync_dist=True)
        trainer = Trainer(strategy="ddp", devices=4)
        """, {"padded-duplicates-counted"}),
    "padding-dropped": ("""
        sampler = DistributedSampler(val_set, shuffle=False, drop_last=True)
        for x, y in loader:
            total += y.shape[0]
        dist.all_reduce(total)
        """, set()),
    "padding-masked": ("""
        sampler = DistributedSampler(val_set, shuffle=False)
        for x, y, counted in loader:
            total += int(counted.sum())
        dist.all_reduce(total)
        """, set()),
    # host-sync-per-step
    "gpu-item-in-loop": ("device = 'cuda'\n" + LOOP.format(add="s += loss.item() * len(y)\n    n += len(y)",
                                                           divide="print(s / n)"), {"host-sync-per-step"}),
    "gpu-float-in-step": ("""
        class M(LightningModule):
            def training_step(self, batch, i):
                loss = F.cross_entropy(self(batch[0]), batch[1])
                self.log("loss", float(loss), batch_size=8)
        trainer = Trainer(accelerator="gpu")
        """, {"host-sync-per-step"}),
    "periodic-item-on-gpu": ("""
        model.to(local_rank)
        for it in range(max_iters):
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            if it % log_interval == 0:
                print(loss.item())
        """, set()),
    "device-passed-in": ("""
        def train(model, loader, device):
            for x, y in loader:
                loss = F.cross_entropy(model(x.to(device)), y.to(device))
                loss.backward()
                total += loss.item() * len(y)
        """, {"host-sync-per-step"}),
    "cpu-device-option": (("parser.add_argument('--device', default='cpu')\nargs = parser.parse_args()\n"
                           + LOOP.format(add="x = x.to(args.device)\n    s += loss.item() * len(y)\n    n += len(y)",
                                         divide="print(s / n)")), set()),
    "cpu-item-in-loop": (LOOP.format(add="s += loss.item() * len(y)\n    n += len(y)", divide="print(s / n)"), set()),
    "gpu-item-per-epoch": ("""
        device = torch.device("cuda")
        for epoch in range(10):
            for x, y in loader:
                s += loss.detach() * len(y)
            print(s.item())
        """, set()),
    "gpu-float-of-config": ("device = 'cuda'\nfor x, y in loader:\n    lr = float(args.lr)\n", set()),
}


@pytest.mark.parametrize("source, expected", CASES.values(), ids=CASES.keys())
def test_each_habit_and_its_look_alikes(source, expected):
    assert _codes(source) == expected


# -- notebooks --------------------------------------------------------------------------------------


def _notebook(*cells: tuple[str, str]) -> str:
    return json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {},
                       "cells": [{"cell_type": kind, "metadata": {}, "source": source.splitlines(keepends=True),
                                  **({"outputs": [], "execution_count": None} if kind == "code" else {})}
                                 for kind, source in cells]})


def test_a_notebook_finding_names_its_line_in_the_joined_code_and_its_cell():
    text = _notebook(("markdown", "# Title\n"),
                     ("code", "%matplotlib inline\nimport torch\n!nvidia-smi\ncriterion = torch.nn.MSELoss()\n"),
                     ("code", "%%bash\nfor f in *; do echo $f; done\n"),
                     ("code", ("for x, y in train_loader:\n    loss = criterion(model(x), y)\n    %time step()\n"
                               "    running_loss += loss.item()\nprint(running_loss / len(train_loader))")))
    [finding] = check_notebook(text, "run.ipynb")
    assert finding.code == "mean-of-batch-means" and finding.path == "run.ipynb"
    assert finding.line == 11  # cells 1 and 2 hold 4 + 2 lines; the sum is divided on line 5 of cell 3
    assert finding.evidence.startswith("cell 3: `running_loss / len(train_loader)`")


def test_the_corpus_notebook_names_its_cell():
    findings = _check(CORPUS / "mean-of-batch-means" / "notebook.ipynb")
    assert {f.code for f in findings} >= {"mean-of-batch-means"}
    assert all(f.evidence.startswith("cell 3: ") for f in findings)


@pytest.mark.parametrize("text, message", [
    ("{not json", r"'nb.ipynb': not a Jupyter notebook \(not JSON"),
    ('{"cells": []}', r"'nb.ipynb': not a Jupyter notebook \(nbformat 4 JSON with a list of cells\)"),
    ('[1, 2]', r"'nb.ipynb': not a Jupyter notebook \(nbformat 4"),
    ('{"nbformat": 4, "cells": [{"cell_type": "code"}]}', r"'nb.ipynb': not a Jupyter notebook \(cell 1 has no"),
])
def test_a_file_that_is_not_a_notebook_is_unusable(text, message):
    with pytest.raises(UnusableInput, match=message):
        check_notebook(text, "nb.ipynb")


def test_a_notebook_that_is_not_python_names_the_cell():
    text = _notebook(("code", "import torch\n"), ("code", "x = (1,\n"))
    with pytest.raises(UnusableInput, match=r"'nb.ipynb': not valid Python \(.*, line 2, cell 2\)"):
        check_notebook(text, "nb.ipynb")


# -- unusable input ---------------------------------------------------------------------------------


def test_a_script_that_is_not_python_is_unusable():
    text = "for x in loader:\n    total += loss.item(\n"
    try:
        ast.parse(text)
    except SyntaxError as error:
        expected = f"'train.py': not valid Python ({error.msg}, line {error.lineno})"
    with pytest.raises(UnusableInput) as raised:
        check_python(text, "train.py")
    assert str(raised.value) == expected


def test_a_byte_order_mark_and_windows_line_ends_change_nothing():
    source = ("running_loss = 0.0\r\nfor x, y in loader:\r\n    running_loss += F.mse_loss(x, y).item()\r\n"
              "print(running_loss / len(loader))\r\n")
    [finding] = check_python("\ufeff" + source, "windows.py")
    assert (finding.code, finding.line) == ("mean-of-batch-means", 4)


def test_every_python_file_of_the_repository_is_read_without_a_crash():
    """A finding or ``UnusableInput`` (a file someone is editing), never another exception."""
    for path in sorted([*PACKAGE.rglob("*.py"), *(ROOT / "tests").rglob("*.py"), *(ROOT / "benchmarks").glob("*.py")]):
        with contextlib.suppress(UnusableInput):
            check_python(path.read_text(encoding="utf-8"), str(path))


# -- many in a row ----------------------------------------------------------------------------------


def test_a_hundred_scripts_checked_in_a_row_each_give_their_own_findings():
    """Nothing carries over from one script to the next (the time it takes: benchmarks/bench_doctor_reads.py)."""
    pool = [(p, p.read_text(encoding="utf-8")) for p in sorted(CORPUS.rglob("*")) if p.suffix in SCRIPTS]

    def check(path, text):
        checker = check_notebook if path.suffix == ".ipynb" else check_python
        return [(f.code, f.line) for f in checker(text, str(path))]

    alone = {path: check(path, text) for path, text in pool}
    for path, text in itertools.islice(itertools.cycle(pool), 100):
        assert check(path, text) == alone[path], path
