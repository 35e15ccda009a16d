"""The in-the-wild cases' shared parts: the uneven data set, the case record, the table and the figure."""

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from accumbug.lessons.wild.data import OUTLIER_TARGET, uneven_data, zero_linear
from accumbug.lessons.wild.record import WildCase
from accumbug.lessons.wild.summary import (
    DOCS_FIGURE,
    NOTEBOOK_FIGURE,
    displayed_drawn_error,
    format_wild_cases,
    format_wild_data,
    format_wild_doctor,
    format_wild_table,
    plot_wild,
    printed_decimals,
    publish_figure,
)

ROOT = Path(__file__).resolve().parents[1]


def test_the_shared_data_has_a_partial_last_batch_of_outliers():
    data = uneven_data()
    assert len(data) == 1032 and data.outliers == tuple(range(1024, 1032))
    sizes = [len(part) for part in data.losses().split(16)]
    assert sizes == [16] * 64 + [8]
    assert torch.all(data.losses()[1024:] == OUTLIER_TARGET ** 2)
    exact = data.losses().sum().item() / 1032
    assert data.exact() == pytest.approx(exact, rel=1e-15)
    means = [data.losses()[i:i + 16].mean().item() for i in range(0, 1032, 16)]
    assert data.mean_of_batch_means() == pytest.approx(sum(means) / 65, rel=1e-15)
    assert data.mean_of_batch_means() > 1.2 * data.exact()  # the outliers make the error plain


def test_exact_counts_each_index_once():
    data = uneven_data(1031, outliers=[0])
    assert data.exact([0, 1, 0]) == pytest.approx((data.losses()[0] + data.losses()[1]).item() / 2)


def test_the_zero_model_predicts_zero_so_the_loss_is_the_squared_target():
    data = uneven_data()
    loss = torch.nn.functional.mse_loss(zero_linear()(data.features), data.targets, reduction="none")
    assert torch.allclose(loss.detach().double().reshape(-1), data.losses(), rtol=1e-7, atol=0)  # float32 rounding


@pytest.mark.parametrize("kwargs, message", [
    ({"samples": 1}, "samples=1: must be a whole number >= 2"),
    ({"samples": 10, "batch_size": 11}, "batch_size=11: must be a whole number from 1 to samples=10"),
    ({"samples": 10, "batch_size": 4, "outliers": [10]}, "outliers=(10,): sample indices must lie in 0..9"),
])
def test_bad_data_settings_are_named(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        uneven_data(**kwargs)


CASES = [WildCase("A", "1.0", "exact one", 1.4826, 1.482551, 1.482551),
         WildCase("A", "1.0", "mean of batch means", 1.9635, 1.963454, 1.482551, "owner/repo#12"),
         WildCase("B", "2.0", "overflowed state", None, math.inf, 1.482551)]


def test_a_case_knows_its_errors_and_whether_it_is_exact():
    exact, wrong, overflowed = CASES
    assert exact.is_exact and not wrong.is_exact and not overflowed.is_exact
    assert wrong.saved_error == pytest.approx(1.963454 / 1.482551 - 1)
    assert overflowed.saved_error == math.inf and overflowed.displayed_error is None


def test_the_table_has_a_row_per_case_with_its_error_and_upstream():
    table = format_wild_table(CASES).splitlines()
    assert len(table) == 2 + len(CASES)
    assert table[2].endswith("| 1.48255 | 0.00 % | — |")  # an exact case never reads -0.00 %
    assert table[3] == "| A 1.0 | mean of batch means | 1.9635 | 1.96345 | 1.48255 | +32.44 % | owner/repo#12 |"
    assert table[4].endswith("| — | inf | 1.48255 | inf | — |")


def test_the_figure_draws_every_case_and_labels_non_finite_ones():
    axis = plot_wild(CASES).axes[0]
    assert [t.get_text() for t in axis.get_yticklabels()] == ["A 1.0: exact one", "A 1.0: mean of batch means",
                                                               "B 2.0: overflowed state"]
    drawn = [line for line in axis.lines if len(line.get_xdata()) == 1]
    assert len(drawn) == 5  # saved for three cases, displayed for two
    assert [text.get_text() for text in axis.texts] == ["inf"]


def test_a_non_finite_row_is_labelled_once_inside_the_frame():
    """Saved and displayed both NaN: one "nan" label, to the left of the edge the markers sit on."""
    axis = plot_wild([WildCase("H", "1", "nan filter off", math.nan, math.nan, 0.99)]).axes[0]
    assert [(text.get_text(), text.get_horizontalalignment()) for text in axis.texts] == [("nan", "right")]
    assert axis.texts[0].xyann[0] < 0  # offset leftwards from the marker, away from the right spine


@pytest.mark.parametrize("value, decimals", [(1.48, 2), (1.4826, 4), (13.75, 2), (8.162, 3), (1e-05, 5)])
def test_a_displayed_value_has_the_decimals_of_its_shortest_form(value, decimals):
    assert printed_decimals(value) == decimals


def test_a_displayed_value_is_drawn_where_it_rounds_not_as_an_error():
    """1.48 printed for an exact 1.48255 is rounding (half a unit of 0.01); 2.17 for a saved 2.17353 is the saved
    value rounded, drawn there; 0.9785 against a saved 1.96345 and an exact 1.48255 is an error of its own;
    a value that rounds both the saved and the exact one is drawn at the saved."""
    rounded_exact = WildCase("L", "1", "bar", 1.48, 1.482551, 1.482551)
    rounded_saved = WildCase("I", "1", "bar", 2.17, 2.17353, 1.482551)
    its_own = WildCase("K", "1", "console", 0.9785, 1.963454, 1.482551)
    assert rounded_exact.displayed_error < -1e-3 and displayed_drawn_error(rounded_exact) == 0.0
    assert displayed_drawn_error(rounded_saved) == rounded_saved.saved_error != rounded_saved.displayed_error
    assert displayed_drawn_error(its_own) == its_own.displayed_error
    both = WildCase("L", "1", "ddp", 1.05, 1.04997, 1.04895)  # 1.05 rounds both: the console printed the saved
    assert displayed_drawn_error(both) == both.saved_error
    axis = plot_wild([rounded_exact]).axes[0]
    assert sorted(line.get_xdata()[0] for line in axis.lines if len(line.get_xdata()) == 1) == [0.0, 0.0]


def test_the_figure_is_published_from_the_notebooks_run_folder_only(tmp_path):
    with pytest.raises(FileNotFoundError, match="run notebooks/07_in_the_wild.ipynb first"):
        publish_figure(tmp_path)
    (tmp_path / NOTEBOOK_FIGURE).parent.mkdir(parents=True)
    (tmp_path / NOTEBOOK_FIGURE).write_bytes(b"png")
    assert publish_figure(tmp_path) == tmp_path / DOCS_FIGURE and (tmp_path / DOCS_FIGURE).read_bytes() == b"png"
    cells = json.loads((ROOT / "notebooks" / "07_in_the_wild.ipynb").read_text(encoding="utf-8"))["cells"]
    figure_cells = [cell for cell in cells if "plot_wild" in "".join(cell["source"])]
    assert figure_cells and all("docs" not in "".join(cell["source"]) for cell in cells if cell["cell_type"] == "code")
    assert all(any("image/png" in out.get("data", {}) for out in cell["outputs"]) for cell in figure_cells)


def test_a_case_prints_its_values_errors_console_and_reference():
    case = WildCase("K", "3.5.0", "console", 3.1, 1.963454, 1.482551, "owner/repo#7", "averages twice",
                    console="65/65 - loss: 3.1000")
    assert format_wild_cases([case, case]).split("\n\n")[1].splitlines() == [
        "K 3.5.0: console",
        "  displayed  3.1   as printed: '65/65 - loss: 3.1000'",
        "  saved      1.96345",
        "  exact      1.48255",
        "  error      saved +32.44 %, displayed +109.10 %",
        "  upstream   owner/repo#7",
        "  note       averages twice"]


@pytest.mark.parametrize("outliers, line", [(None, "8 outliers (loss 64): samples 1024 to 1031"),
                                            ([3, 9], "2 outliers (loss 64): samples 3, 9"), ([], "no outliers")])
def test_the_data_is_described_with_its_outliers_and_both_losses(outliers, line):
    data = uneven_data(outliers=outliers)
    text = format_wild_data(data).splitlines()
    assert text[0] == "1,032 samples at batch 16: 65 batches, the last of 8" and text[1] == line
    assert text[2] == f"exact epoch loss (per-sample mean)  {data.exact():.6f}"
    assert text[3].startswith(f"mean of batch means                 {data.mean_of_batch_means():.6f}  (")


def test_the_doctor_reads_each_cases_files_together(tmp_path):
    history, console, alone = tmp_path / "history.json", tmp_path / "console.log", tmp_path / "alone.json"
    history.write_text('{"loss": [1.9634541]}')
    console.write_text("Epoch 1/1\n65/65 ━━━━━━━━━━━━━━━━━━━━ 0s 1ms/step - loss: 0.9785\n")
    alone.write_text('{"loss": [1.4825507]}')
    cases = [WildCase("K", "3.1.1", "fit", 0.9785, 1.9634541, 1.482551, files=(str(history), str(console))),
             WildCase("K", "3.15.1", "fit", None, 1.4825507, 1.482551, files=(str(alone),)),
             WildCase("T", "1.0", "no files", None, 1.0, 1.0)]
    blocks = format_wild_doctor(cases).split("\n\n")
    assert len(blocks) == 2
    assert blocks[0].splitlines()[:3] == ["K 3.1.1: fit", f"  file  {history}", f"  file  {console}"]
    assert "file-disagrees-with-console" in blocks[0]
    assert blocks[1].splitlines()[-1] == "  nothing found"


def test_a_case_of_an_installed_module_carries_its_version():
    from accumbug.lessons.wild.record import installed_case

    case = installed_case("torch", "torch", "a case", None, 2.0, 2.0, note="n")
    assert (case.framework, case.version, case.note, case.is_exact) == ("torch", torch.__version__, "n", True)


def test_a_missing_framework_skips_with_the_install_command_or_fails_where_required(wild, monkeypatch):
    monkeypatch.delenv("ACCUMBUG_REQUIRE_WILD", raising=False)
    with pytest.raises(pytest.skip.Exception, match=re.escape('pip install -e ".[wild]"')):
        wild("no_such_framework_here")
    monkeypatch.setenv("ACCUMBUG_REQUIRE_WILD", "1")
    with pytest.raises(pytest.fail.Exception, match="no_such_framework_here is missing under ACCUMBUG_REQUIRE_WILD=1"):
        wild("no_such_framework_here")


@pytest.mark.slow  # four fresh interpreters importing torch
@pytest.mark.parametrize("module, framework, call", [
    ("ignite_cases", "ignite", "ignite_cases()"), ("torchmetrics_cases", "torchmetrics", "torchmetrics_cases()"),
    ("hf_cases", "transformers", "hf_cases('unused')"), ("lightning_cases", "lightning", "lightning_cases('unused')")])
def test_each_case_module_imports_without_its_framework_and_asks_for_it_when_run(module, framework, call):
    """No ``wild`` fixture: the check hides the framework itself, so it runs with or without it installed."""
    code = (f"import sys; sys.modules[{framework!r}] = None\n"
            f"from accumbug.lessons.wild.{module} import *\n"
            f"try:\n    {call}\nexcept ImportError:\n    print('needs {framework}')\n")
    done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"needs {framework}"
