"""The Hugging Face cases (``accumbug.lessons.wild.hf_cases``) against values recomputed here from the data.

Every expected value is computed in float64 from the shared data's targets and features (the zero
model's loss of sample ``i`` is ``target[i] ** 2``), never read from the module under test, so a
change in what the Trainer logs or saves fails a test. The Trainer accumulates in float32: saved
values are compared within 1e-5, printed ones (formatted ``.4g``) within 5e-4.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import re

import pytest
import torch

from accumbug.lessons.wild.data import uneven_data

SAVED, PRINTED = 1e-5, 5e-4  # relative tolerances: float32 accumulation; four significant digits
ACCUMULATION, LOGGING_STEPS, NAN_STEP = 5, 13, 14  # the settings the cases document


def _micro_batches(values: torch.Tensor, size: int = 16) -> list[torch.Tensor]:
    return [values[start:start + size] for start in range(0, len(values), size)]


def _losses(data) -> torch.Tensor:
    return data.targets.double().reshape(-1) ** 2


def _gradient(data, start: int, stop: int) -> torch.Tensor:
    """The gradient of the mean squared error over samples ``start:stop`` at the zero model: weights, then bias."""
    targets, features = data.targets[start:stop].double(), data.features[start:stop].double()
    return (-2.0 * targets * torch.cat([features, torch.ones_like(targets)], dim=1)).mean(dim=0)


def _state(case) -> tuple[str, list[dict]]:
    (path,) = case.files
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    return text, json.loads(text)["log_history"]


@pytest.fixture(scope="module")
def hf(wild, tmp_path_factory):
    """``hf_cases`` run once, by name, with what it printed and the folder it wrote to."""
    wild("transformers")
    from accumbug.lessons.wild.hf_cases import hf_cases

    out = tmp_path_factory.mktemp("wild")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
        cases = hf_cases(out)
    return {case.case: case for case in cases}, printed.getvalue(), out


def _find(cases: dict, *words: str):
    (found,) = [case for name, case in cases.items() if all(word in name for word in words)]
    return found


@pytest.mark.parametrize("accumulation", [1, 3, 4, 5])
def test_the_formulas_match_a_hand_computation(wild, accumulation):
    wild("transformers")
    from accumbug.lessons.wild.hf_cases import accumulation_formulas

    data = uneven_data()
    micro = _micro_batches(_losses(data))
    expected = []
    for start in range(0, len(micro), accumulation):
        step = micro[start:start + accumulation]
        expected.append((sum(m.mean().item() for m in step) / len(step),
                         sum(m.sum().item() for m in step) / sum(len(m) for m in step)))
    found = accumulation_formulas(data, accumulation)
    assert len(found) == len(expected) == math.ceil(65 / accumulation)
    for (old, fixed), (old_here, fixed_here) in zip(found, expected):
        assert old == pytest.approx(old_here, rel=1e-12) and fixed == pytest.approx(fixed_here, rel=1e-12)
    for old, fixed in found[:-1]:  # full micro-batches only: both formulas agree
        assert old == pytest.approx(fixed, rel=1e-12)
    old, fixed = found[-1]
    if len(micro) - (len(found) - 1) * accumulation == 1:  # the 8 outliers alone in the last step: nothing to weigh
        assert old == pytest.approx(fixed, rel=1e-12)
    else:  # beside full micro-batches, the old formula gives its 8 items the weight of 16
        assert old / fixed - 1 > 0.4


@pytest.mark.slow
def test_the_cases_print_nothing_and_keep_their_trainer_state(wild, hf):
    transformers = wild("transformers")
    cases, printed, out = hf
    assert printed == ""
    assert len(cases) == 6 and all(case.framework == "HF transformers" for case in cases.values())
    run = [case for case in cases.values() if case.files]
    assert len(run) == 5 and all(case.version == transformers.__version__ for case in run)
    for case in run:
        (path,) = case.files
        assert path.startswith(str(out / "hf")) and path.endswith("trainer_state.json")
        assert case.console.startswith("{") and case.console.endswith("}")
    assert not list((out / "hf").rglob("checkpoint-*")) and not list((out / "hf").rglob("*.safetensors"))


@pytest.mark.slow
def test_gradient_accumulation_divides_by_the_items_only_for_a_forward_with_kwargs(wild, hf):
    wild("transformers")
    cases, _, _ = hf
    data = uneven_data()
    start = 12 * ACCUMULATION * 16  # the 13th and last step: micro-batches of 16, 16, 16, 16 and 8 items
    last = _losses(data)[start:]
    exact = last.mean().item()
    old = sum(m.mean().item() for m in _micro_batches(last)) / ACCUMULATION
    formula, plain, kwargs = (_find(cases, "gradient_accumulation", word) for word in ("pre-4.46", "without", "(**"))
    assert formula.saved == pytest.approx(old, rel=1e-12) and formula.exact == pytest.approx(exact, rel=1e-12)
    assert plain.saved == pytest.approx(old, rel=SAVED) and plain.displayed == pytest.approx(old, rel=PRINTED)
    assert kwargs.saved == pytest.approx(exact, rel=SAVED) and kwargs.displayed == pytest.approx(exact, rel=PRINTED)
    assert kwargs.is_exact and not plain.is_exact and plain.saved_error > 0.5
    exact_gradient = _gradient(data, start, len(data)).norm().item()
    old_gradient = (sum(_gradient(data, s, min(s + 16, len(data))) for s in range(start, len(data), 16))
                    / ACCUMULATION).norm().item()
    for case, gradient in ((kwargs, exact_gradient), (plain, old_gradient)):
        _, history = _state(case)
        assert [entry["step"] for entry in history if "loss" in entry] == list(range(1, 14))
        assert history[-2]["grad_norm"] == pytest.approx(gradient, rel=SAVED)
        assert history[-2]["loss"] == case.saved
    assert old_gradient / exact_gradient - 1 > 0.5


@pytest.mark.slow
def test_the_logged_epoch_loss_is_a_mean_of_step_losses(wild, hf):
    wild("transformers")
    cases, _, _ = hf
    data = uneven_data()
    losses = _losses(data)
    mean_of_means = sum(m.mean().item() for m in _micro_batches(losses)) / 65
    case = _find(cases, "logging_strategy='epoch'")
    assert case.exact == pytest.approx(losses.mean().item(), rel=1e-12)
    assert case.saved == pytest.approx(mean_of_means, rel=SAVED)
    assert case.displayed == pytest.approx(mean_of_means, rel=PRINTED)
    assert case.saved_error == pytest.approx(mean_of_means / losses.mean().item() - 1, rel=1e-4)
    assert case.saved_error > 0.3
    _, history = _state(case)
    assert history[-1]["train_loss"] == pytest.approx(mean_of_means, rel=SAVED)
    assert f"'loss': '{mean_of_means:.4g}'" in case.console


@pytest.mark.slow
def test_the_nan_filter_counts_a_nan_step_at_a_window_start_as_zero(wild, hf):
    wild("transformers")
    cases, _, _ = hf
    data = uneven_data(outliers=())
    means = [m.mean().item() for m in _micro_batches(_losses(data))]  # step k's loss is means[k - 1]
    finite = torch.cat([_losses(data)[:(NAN_STEP - 1) * 16], _losses(data)[NAN_STEP * 16:]]).mean().item()
    on, off = _find(cases, "filter=True"), _find(cases, "filter=False")
    assert on.exact == pytest.approx(finite, rel=1e-12) and off.exact == on.exact
    as_zero = [0.0 if step == NAN_STEP else mean for step, mean in enumerate(means, 1)]
    assert on.saved == pytest.approx(sum(as_zero) / 65, rel=SAVED)
    assert on.displayed == pytest.approx(sum(as_zero) / 65, rel=PRINTED)
    _, history = _state(on)
    logged = [entry["loss"] for entry in history if "loss" in entry]
    windows = [as_zero[start:start + LOGGING_STEPS] for start in range(0, 65, LOGGING_STEPS)]
    assert logged == pytest.approx([sum(w) / LOGGING_STEPS for w in windows], rel=SAVED)
    others = means[NAN_STEP:2 * LOGGING_STEPS]  # what "the average of recent valid losses" would put in its place
    assert logged[1] < sum(others) / len(others) * (1 - 0.05)
    assert math.isnan(off.saved) and math.isnan(off.displayed)
    _, history = _state(off)
    logged = [entry["loss"] for entry in history if "loss" in entry]
    assert logged[0] == pytest.approx(sum(means[:LOGGING_STEPS]) / LOGGING_STEPS, rel=SAVED)
    assert all(math.isnan(value) for value in logged[1:]) and len(logged) == 5  # NaN never leaves the running sum


@pytest.mark.slow
def test_trainer_state_json_holds_the_invalid_token_nan(wild, hf):
    wild("transformers")
    from accumbug.doctor.history_files import check_history, read_history

    cases, _, _ = hf

    def refuse(token):
        raise ValueError(f"not JSON: {token}")

    text, _ = _state(_find(cases, "filter=False"))
    assert len(re.findall(r"(?<![\w\"])NaN(?![\w\"])", text)) == 5  # four window losses and train_loss
    assert re.search(r'"train_loss": NaN,?\n', text)
    with pytest.raises(ValueError, match="not JSON: NaN"):
        json.loads(text, parse_constant=refuse)
    for case in cases.values():
        if case.files and "filter=False" not in case.case:
            json.loads(_state(case)[0], parse_constant=refuse)  # no NaN anywhere else: strict JSON
    history = read_history(_find(cases, "filter=False").files[0])
    assert history.kind == "hf-trainer-state" and history.invalid_tokens == ["NaN"] * 5
    assert "invalid-json-tokens" in {finding.code for finding in check_history(history)}


def test_the_cases_leave_the_callers_random_states_alone(wild, tmp_path, monkeypatch):
    wild("transformers")
    import random

    from accumbug.lessons.wild import hf_cases as module

    monkeypatch.setattr(module, "_formula_case", lambda data: torch.manual_seed(42) and random.seed(42))
    for name in ("_accumulation_case", "_epoch_loss_case", "_nan_case"):
        monkeypatch.setattr(module, name, lambda *args, **kwargs: random.random())
    torch.manual_seed(3)
    random.seed(3)
    expected = (torch.rand(1), random.random())
    torch.manual_seed(3)
    random.seed(3)
    module.hf_cases(tmp_path)
    assert (torch.rand(1), random.random()) == expected
