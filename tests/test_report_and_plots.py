import io
import math

import pytest

from accumbug.lessons.catalogue import make_trackers
from accumbug.lessons.mechanisms import Outcome
from accumbug.lessons.plots import plot_case, plot_divergence, plot_gallery, plot_trajectory, save_figure
from accumbug.lessons.report import (
    differing_lines,
    divergence_rows,
    format_table,
    format_wrapped,
    incident_comparison,
    run_verdicts,
    source_side_by_side,
)
from accumbug.lessons.streams import first_nonfinite, stall_start
from accumbug.specimens.incident_trackers import IncidentBrokenTracker, IncidentFixedTracker
from accumbug.train import TrainConfig, train

TRACKERS = ["incident-broken:python", "incident-fixed:python", "incident-broken:float16", "incident-fixed:float16",
            "exact"]


CONFIG = TrainConfig(preset="tiny", epochs=2, samples=264, classes=16)  # 17 batches, the last of 8


@pytest.fixture(scope="module")
def run():
    return train(CONFIG, make_trackers(TRACKERS), trajectory=True)


def test_trajectory_is_loss_sum_after_every_batch(run):
    sums = run.trajectories["incident-fixed:python"]
    assert [len(epoch) for epoch in sums] == [17, 17]
    assert sums[0][-1] == run.histories["incident-fixed:python"]["train_loss_sum"][0]
    assert all(b > a for a, b in zip(sums[0], sums[0][1:]))


def test_divergence_rows_without_a_run_folder_round_trip_the_strict_file(run):
    rows = divergence_rows(run)
    assert len(rows) == 10 and {r["epoch"] for r in rows} == {1, 2}
    exact = [r for r in rows if r["tracker"] == "exact"]
    assert all(r["error_pct"] == 0 for r in exact)
    assert "strict JSON" in format_table(rows).splitlines()[0]


def test_incident_comparison_measures_every_row(run):
    rows = {r["quantity"]: r for r in incident_comparison(run)}
    assert rows["batches per epoch"]["measured"] == "17 (last batch 8)"
    assert rows["broken: total after the epoch"]["measured"] == "264"
    assert rows["fixed: total after the epoch"]["measured"] == "17"
    first = run.trajectories["incident-fixed:python"][0][0]
    assert rows["broken: first addend loss * batch_size"]["measured"] == pytest.approx(first * 16)


def test_run_verdicts_are_computed(run):
    verdicts = dict(run_verdicts(run))
    exact = "incident-broken:python equals the exact loss in every epoch (relative 1e-12)"
    assert verdicts[exact]
    assert verdicts["every tracker reports the same top-1 and top-5 accuracy"]
    run.histories["incident-broken:python"]["train_loss"][0] *= 1.001
    try:
        assert not dict(run_verdicts(run))[exact]
    finally:
        run.histories["incident-broken:python"]["train_loss"][0] /= 1.001


def test_source_side_by_side_highlights_only_the_differing_lines():
    broken, fixed = differing_lines(IncidentBrokenTracker.update, IncidentFixedTracker.update)
    assert broken[-2:] == ["self.loss_sum += loss * batch_size  # 9.14 * 16 = 146.24",
                           "self.total += batch_size  # total += 16"]
    assert fixed == ["self.loss_sum += loss  # 9.14 (correct magnitude)",
                     "self.total += 1  # total += 1 (count batches)"]
    html = source_side_by_side(IncidentBrokenTracker.update, IncidentFixedTracker.update)
    # the changed block is 3 lines on the left, 2 + 1 blank on the right: 6 highlighted rows
    assert html._repr_html_().count("#fde0c5") == 6


@pytest.mark.parametrize("trajectory, overflow, stall", [
    ([1.0, 2.0, math.inf, math.inf], 2, None),
    ([1.0, 2.0] + [3.0] * 11, None, 2),
    ([1.0, 2.0, 3.0, 3.0], None, None),  # two equal values are not a stall
    ([1.0, math.nan], 1, None),
])
def test_overflow_and_stall_detection(trajectory, overflow, stall):
    assert first_nonfinite(trajectory) == overflow and stall_start(trajectory) == stall


def test_figures_are_deterministic_pngs(run, tmp_path):
    rows = divergence_rows(run)
    for name, make in (("d", lambda: plot_divergence(rows)),
                       ("t", lambda: plot_trajectory({n: s[0] for n, s in run.trajectories.items()}))):
        a, b = save_figure(make(), tmp_path / f"{name}1.png"), save_figure(make(), tmp_path / f"{name}2.png")
        assert a.read_bytes() == b.read_bytes() and a.read_bytes().startswith(b"\x89PNG")


def test_divergence_figure_has_one_legend_naming_each_series_once(run):
    legends = plot_divergence(divergence_rows(run)).legends
    assert len(legends) == 1
    labels = [text.get_text() for text in legends[0].get_texts()]
    assert labels == ["exact", "incident-broken: console = memory", "incident-broken: incident's JSON",
                      "incident-fixed: console = memory", "incident-fixed: incident's JSON"]


def test_divergence_figure_of_a_run_with_the_exact_tracker_alone():
    alone = train(CONFIG, make_trackers(["exact"]))
    figure = plot_divergence(divergence_rows(alone))
    assert figure.legends == [] and save_figure(figure, io.BytesIO()).getvalue().startswith(b"\x89PNG")


def test_format_wrapped_wraps_each_cell_in_its_column():
    rows = [{"n": 1, "text": "one two three four five six", "v": "holds"}]
    lines = format_wrapped(rows, {"n": ("#", 2), "text": ("text", 9), "v": ("verdict", 7)}).splitlines()
    assert lines[0].split() == ["#", "text", "verdict"]
    assert lines[2:5] == ["1   one two    holds", "    three", "    four five"]
    assert all(len(line) <= 2 + 2 + 9 + 2 + 7 for line in lines)


def outcome(console, file):
    return Outcome(console=console, file=file, exact=[9.0, 8.5], file_top5=[1.0, 2.0], weights_fine=True,
                   file_text="", batches=2, trajectory=[])


def test_gallery_figures_label_off_scale_values():
    figure = plot_gallery({"a": outcome([9.0, math.inf], [0.0, 1.7976931348623157e308]),
                           "b": outcome([9.0, 8.5], [9.0, 8.5])},
                          {"a": "case a", "b": "case b"}, columns=2)
    first = figure.axes[0]
    assert first.get_title() == "case a" and first.get_xlabel() == "epoch" and first.get_ylabel() == "epoch loss"
    assert {t.get_text() for t in first.texts} == {"inf", "1.8e+308"}
    assert [t.get_text() for t in figure.legends[0].get_texts()] == ["exact", "console", "file, read back",
                                                                     "off scale or not finite"]
    single = plot_case(outcome([9.0, 8.5], [0.0, 0.0]), "case c")
    assert single.axes[0].get_title() == "case c" and single.legends


def test_save_figure_writes_to_a_buffer_or_a_new_folder(tmp_path):
    figure = plot_case(outcome([9.0, 8.5], [0.0, 0.0]), "case")
    buffer = io.BytesIO()
    assert save_figure(figure, buffer, dpi=50, tight=False) is buffer and buffer.getvalue().startswith(b"\x89PNG")
    path = save_figure(figure, tmp_path / "new" / "case.png")
    assert path.read_bytes().startswith(b"\x89PNG")
