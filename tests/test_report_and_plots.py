import io
import json
import math

import pytest
from matplotlib.colors import to_hex

from accumbug.config import TrainConfig
from accumbug.history import loads_strict
from accumbug.lessons.mechanisms import EVIDENCE, Outcome, diagnosis, epoch_stream, gallery, mechanism
from accumbug.lessons.plots import (
    ACCUMULATOR_NAMES,
    ARTEFACT_NOTE,
    DIAGNOSIS_COLOURS,
    ZOOM_BATCHES,
    plot_case,
    plot_diagnosis,
    plot_divergence,
    plot_gallery,
    plot_trajectory,
    relative_error,
    save_figure,
    tracker_label,
)
from accumbug.lessons.streams import first_nonfinite, loss_sums, stall_start
from accumbug.lessons.style import drawn_value
from accumbug.lessons.tables import (
    _short_list,
    differing_lines,
    divergence_rows,
    fixed_digits,
    format_console,
    format_declared_states,
    format_sums_at,
    format_table,
    format_wrapped,
    incident_comparison,
    rank_eval_verdicts,
    run_verdicts,
    source_side_by_side,
)
from accumbug.registry import make_trackers
from accumbug.specimens.incident_trackers import ACCUMULATORS, IncidentBrokenTracker, IncidentFixedTracker
from accumbug.specimens.serialisers import incident_lossy_dumps
from accumbug.train import train

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
    # the changed block is 3 lines on the left, 2 on the right; the row that pads the right is not highlighted
    assert html._repr_html_().count("#fde0c5") == 5


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
    figure = plot_divergence(divergence_rows(run))
    assert len(figure.legends) == 1 and all(axis.get_legend() is None for axis in figure.axes)
    labels = [text.get_text() for text in figure.legends[0].get_texts()]
    assert labels == ["exact loss", "incident-broken: console (value in memory)",
                      "incident-broken: saved file (the incident's JSON)", "incident-fixed: console (value in memory)",
                      "incident-fixed: saved file (the incident's JSON)"]
    # a column per accumulator, named in plain words: losses on top, relative errors below
    assert len(figure.axes) == 4
    assert [axis.get_title() for axis in figure.axes[:2]] == ["accumulator: Python float (float64)",
                                                              "accumulator: float16 tensor"]
    assert [axis.get_yscale() for axis in figure.axes] == ["linear", "linear", "symlog", "symlog"]


def test_divergence_error_panels_draw_the_saved_loss_error_against_exact(run):
    figure = plot_divergence(divergence_rows(run))
    exact = run.histories["exact"]["train_loss"]
    for column, accumulator in enumerate(("python", "float16")):
        lines = {line.get_gid(): line for line in figure.axes[2 + column].get_lines() if line.get_gid()}
        for kind in ("incident-broken", "incident-fixed"):
            name = f"{kind}:{accumulator}"
            saved = loads_strict(incident_lossy_dumps(run.histories[name]))["train_loss"]
            line = lines[f"{name} incident_json error"]
            assert list(line.get_xdata()) == [1, 2]
            assert list(line.get_ydata()) == pytest.approx([abs(s - e) / e for s, e in zip(saved, exact)], rel=1e-12)
            memory = lines[f"{name} memory error"].get_ydata()
            in_memory = run.histories[name]["train_loss"]
            assert list(memory) == pytest.approx([abs(m - e) / e for m, e in zip(in_memory, exact)])
    # the mean of batch means: identical at loss scale, apart on the error scale
    python = {gid: line.get_ydata() for gid, line in
              ((line.get_gid(), line) for line in figure.axes[2].get_lines()) if gid}
    assert max(python["incident-broken:python incident_json error"]) <= 1e-12
    assert min(python["incident-fixed:python incident_json error"]) > 1e-6


def _rows(tracker, accumulator, memory, saved, exact):
    rows = [{"tracker": tracker, "accumulator": accumulator, "epoch": e + 1, "memory": m, "incident_json": s,
             "exact": x} for e, (m, s, x) in enumerate(zip(memory, saved, exact))]
    return rows + [{"tracker": "exact", "accumulator": "float64", "epoch": e + 1, "memory": x, "incident_json": x,
                    "exact": x} for e, x in enumerate(exact)]


def test_divergence_error_panel_marks_non_finite_errors_on_its_top_edge():
    rows = _rows("incident-broken:float16", "float16", [math.inf, 9.0], [0.0, 9.0], [9.0, 8.0])
    figure = plot_divergence(rows)
    errors = figure.axes[1]
    assert errors.get_yscale() == "symlog" and errors.get_ylim()[1] >= 1.0
    assert [t.get_text() for t in errors.texts] == ["inf"]
    lines = {line.get_gid(): line for line in errors.get_lines() if line.get_gid()}
    assert list(lines["incident-broken:float16 incident_json error"].get_ydata()) == pytest.approx([1.0, 1 / 8])
    assert list(lines["incident-broken:float16 memory error"].get_xdata()) == [2]  # epoch 1 is the triangle


def test_divergence_error_panel_writes_inf_beside_its_triangle_clear_of_the_saved_zero_below():
    rows = _rows("incident-broken:float16", "float16", [math.inf, math.inf, 9.0], [0.0, 0.0, 9.0], [9.0, 8.0, 7.0])
    notes = plot_divergence(rows).axes[1].texts
    assert [(n.get_text(), n.get_va(), n.xyann[1]) for n in notes] == [("inf", "center", 0), ("inf", "center", 0)]
    assert [(n.get_ha(), n.xyann[0] > 0) for n in notes] == [("left", True), ("left", True)]


def test_incident_comparison_prints_json_outputs_as_a_json_file_shows_them(run):
    rows = {r["quantity"]: r for r in incident_comparison(run)}
    saved = json.loads(rows["broken: JSON output"]["measured"])
    assert saved == [round(v, 4) for v in run.histories["incident-broken:python"]["train_loss"]]
    assert _short_list([0.0, math.inf, 9.30641]) == "[0.0, inf, 9.3064]"


@pytest.mark.parametrize("value, exact, error", [
    (9.9, 9.0, 0.1), (8.1, 9.0, 0.1), (math.inf, 9.0, math.inf), (0.0, 0.0, 0.0), (1.0, 0.0, math.inf),
])
def test_relative_error(value, exact, error):
    assert relative_error(value, exact) == pytest.approx(error)
    assert math.isnan(relative_error(math.nan, exact)) and math.isnan(relative_error(value, math.nan))


def test_divergence_figure_of_a_run_with_the_exact_tracker_alone():
    alone = train(CONFIG, make_trackers(["exact"]))
    figure = plot_divergence(divergence_rows(alone))
    assert figure.legends == [] and len(figure.axes) == 1
    assert save_figure(figure, io.BytesIO()).getvalue().startswith(b"\x89PNG")


def test_accumulators_are_named_in_plain_words_in_one_place():
    """Every accumulator a tracker accepts has its own words, and a figure's label uses them."""
    assert set(ACCUMULATORS) <= set(ACCUMULATOR_NAMES)
    assert len(set(ACCUMULATOR_NAMES.values())) == len(ACCUMULATOR_NAMES)  # no two read alike
    for key, words in ACCUMULATOR_NAMES.items():
        assert words != key and tracker_label(f"incident-broken:{key}") == f"incident-broken, {words}"
    assert tracker_label("exact") == "exact" and tracker_label("incident-broken:unknown") == "incident-broken, unknown"


@pytest.fixture(scope="module")
def full_stream():
    """The incident stream's 8,520 batches replayed through the incident's trackers: an overflow and stalls."""
    losses, sizes = epoch_stream()
    names = [f"{kind}:{accumulator}" for accumulator in ("python", "float16", "bfloat16")
             for kind in ("incident-broken", "incident-fixed")]
    return {name: loss_sums(losses, sizes, name.startswith("incident-broken"), name.partition(":")[2])
            for name in names}


def test_trajectory_beside_its_first_batches_zoomed(full_stream):
    figure = plot_trajectory(full_stream)
    whole, zoom = figure.axes
    assert whole.get_xlim()[1] >= 8520 and 0 <= zoom.get_xlim()[0] and zoom.get_xlim()[1] <= ZOOM_BATCHES
    assert "all 8,520" in whole.get_xlabel() and f"first {ZOOM_BATCHES}" in zoom.get_xlabel()
    assert whole.get_yscale() == zoom.get_yscale() == "log"
    # the overflow and the bfloat16 stall happen in the zoomed range, and the zoom's y-range holds them
    overflow = first_nonfinite(full_stream["incident-broken:float16"])
    stall = stall_start(full_stream["incident-broken:bfloat16"])
    assert overflow + 1 <= ZOOM_BATCHES and stall + 1 <= ZOOM_BATCHES
    assert zoom.get_ylim()[0] < full_stream["incident-fixed:bfloat16"][-1] < 65504 < zoom.get_ylim()[1]


def test_an_epoch_whose_sums_fail_late_or_that_is_short_gets_no_zoom(full_stream):
    """A zoom on the first batches is drawn only where it shows something the whole epoch does not."""
    late = {name: full_stream[name] for name in ("incident-fixed:python", "incident-fixed:float16")}
    short = {name: sums[:852] for name, sums in full_stream.items()}
    assert len(plot_trajectory(late).axes) == 1 and len(plot_trajectory(short).axes) == 1


def test_trajectory_draws_half_precision_on_top_and_shades_float16s_range(full_stream):
    """A dashed half-precision line is never hidden under a solid one; 65,504 is a shaded edge, not a line."""
    figure = plot_trajectory(full_stream)
    axis = figure.axes[0]
    orders = {line.get_linestyle(): line.get_zorder() for line in axis.get_lines() if len(line.get_xdata()) > 1}
    assert orders["--"] > orders["-"] and orders[":"] > orders["-"]
    assert not [line for line in axis.get_lines() if list(line.get_ydata()) == [65504.0, 65504.0]]
    assert [round(p.get_extents().height) > 0 for p in axis.patches] and axis.patches


def test_trajectory_has_one_legend_in_plain_words_and_no_label_on_the_curves(full_stream):
    figure = plot_trajectory(full_stream)
    assert len(figure.legends) == 1 and all(axis.get_legend() is None and not axis.texts for axis in figure.axes)
    labels = [text.get_text() for text in figure.legends[0].get_texts()]
    overflow = first_nonfinite(full_stream["incident-broken:float16"])

    def stalls(name):
        stall = stall_start(full_stream[name])
        return f"stalls at {full_stream[name][stall]:,.0f} from batch {stall + 1:,}"

    assert labels == ["incident-broken, Python float (float64)", "incident-fixed, Python float (float64)",
                      f"incident-broken, float16 tensor: inf from batch {overflow + 1}",
                      f"incident-fixed, float16 tensor: {stalls('incident-fixed:float16')}",
                      f"incident-broken, bfloat16 tensor: {stalls('incident-broken:bfloat16')}",
                      f"incident-fixed, bfloat16 tensor: {stalls('incident-fixed:bfloat16')}",
                      "above float16's largest value, 65,504: a float16 sum there is inf"]


def test_trajectory_legend_shows_each_event_mark(full_stream):
    """The legend's line carries the mark drawn on the curve: a cross for an overflow, a dot for a stall, none else."""
    handles = plot_trajectory(full_stream).legends[0].legend_handles
    marks = {handle.get_label().partition(":")[0]: handle.get_marker()
             for handle in handles if hasattr(handle, "get_marker")}
    assert marks["incident-broken, float16 tensor"] == "X" and marks["incident-broken, bfloat16 tensor"] == "o"
    assert marks["incident-broken, Python float (float64)"] in (None, "None", "")


def test_a_short_epoch_is_drawn_in_one_panel(run):
    figure = plot_trajectory({name: sums[0] for name, sums in run.trajectories.items() if name != "exact"})
    assert len(figure.axes) == 1 and figure.axes[0].get_xlim()[1] < ZOOM_BATCHES
    assert "incident-fixed, float16 tensor" in [t.get_text() for t in figure.legends[0].get_texts()]


def test_format_wrapped_wraps_each_cell_in_its_column():
    rows = [{"n": 1, "text": "one two three four five six", "v": "holds"}]
    lines = format_wrapped(rows, {"n": ("#", 2), "text": ("text", 9), "v": ("verdict", 7)}).splitlines()
    assert lines[0].split() == ["#", "text", "verdict"]
    assert lines[2:5] == ["1   one two    holds", "    three", "    four five"]
    assert all(len(line) <= 2 + 2 + 9 + 2 + 7 for line in lines)


def outcome(console, file, exact=(9.0, 8.5), trajectory=(), top5=None, weights_fine=True):
    return Outcome(console=console, file=file, exact=list(exact), file_top5=top5 or [1.0] * len(exact),
                   weights_fine=weights_fine, file_text="", batches=2, trajectory=list(trajectory))


def test_gallery_figures_label_off_scale_values():
    figure = plot_gallery({"a": outcome([9.0, math.inf], [0.0, 1.7976931348623157e308]),
                           "b": outcome([9.0, 8.5], [9.0, 8.5])},
                          {"a": "case a", "b": "case b"}, columns=2)
    first = figure.axes[0]
    assert first.get_title() == "case a" and first.get_xlabel() == "epoch" and first.get_ylabel() == "epoch loss"
    assert {t.get_text() for t in first.texts} == {"inf", "1.8e308"}
    assert [t.get_text() for t in figure.legends[0].get_texts()] == [
        "exact loss", "console (printed to 4 decimals; drawn at the value it rounds)", "saved file (read back)",
        "off scale or not finite", "colour: a gallery case's arithmetic"]
    single = plot_case(outcome([9.0, 8.5], [0.0, 0.0]), "case c")
    assert single.axes[0].get_title() == "case c" and single.legends


def test_save_figure_writes_to_a_buffer_or_a_new_folder(tmp_path):
    figure = plot_case(outcome([9.0, 8.5], [0.0, 0.0]), "case")
    buffer = io.BytesIO()
    assert save_figure(figure, buffer, dpi=50, tight=False) is buffer and buffer.getvalue().startswith(b"\x89PNG")
    path = save_figure(figure, tmp_path / "new" / "case.png")
    assert path.read_bytes().startswith(b"\x89PNG")


def test_gallery_panel_within_five_percent_of_exact_shows_its_difference_on_its_own_scale():
    near = outcome([9.0009, 8.4983], [9.0009, 8.5], exact=(9.0, 8.5))  # +0.01 %, -0.02 %, 0
    figure = plot_gallery({"a": outcome([9.0, math.inf], [0.0, 0.0]), "b": near}, {"a": "far", "b": "near"},
                          columns=2)
    far_axis, near_axis = figure.axes
    assert far_axis.get_ylabel() == "epoch loss" and far_axis.get_ylim()[0] < 0.0  # a saved 0.0 above the edge
    assert near_axis.get_ylabel() == "difference from exact (%)"
    console, file = [line for line in near_axis.get_lines() if line.get_marker() == "o"]
    assert list(console.get_ydata()) == pytest.approx([0.01, (8.4983 - 8.5) / 8.5 * 100])
    assert list(file.get_ydata()) == pytest.approx([0.01, 0.0])
    low, high = near_axis.get_ylim()
    assert low < -0.02 and 0.01 < high and high - low < 0.1  # a 0.01 % step spans a good part of the panel


def test_a_printed_value_is_drawn_at_the_value_it_rounds_not_as_an_error():
    """9.0002 printed for a file of 9.00018 is rounding: the console is drawn on the file's value."""
    rounded = outcome([9.0002, 8.4998], [9.00018, 8.49984], exact=(9.0, 8.5))
    axis = plot_gallery({"r": rounded}, {"r": "rounding"}, columns=1).axes[0]
    console, file = [line for line in axis.get_lines() if line.get_marker() == "o"]
    assert list(console.get_ydata()) == pytest.approx(list(file.get_ydata()))


@pytest.mark.parametrize("printed, candidates, drawn", [
    (9.1621, (9.16213, 9.5), 9.16213), (9.1621, (9.5, 9.16206), 9.16206), (9.1621, (9.1616,), 9.1621),
    (9.1621, (math.nan,), 9.1621)])
def test_drawn_value_takes_the_first_value_within_half_a_unit(printed, candidates, drawn):
    assert drawn_value(printed, 4, *candidates) == drawn


def test_a_stalled_sums_fall_is_marked_as_an_artefact():
    exact, stalled = (9.2, 8.7, 8.2, 7.5), [1.0, 2.0] + [3.0] * 11
    falls = outcome([3.8, 3.8, 3.8, 1.9], [3.8, 3.8, 3.8, 1.9], exact=exact, trajectory=stalled)
    no_stall = outcome([3.8, 3.8, 3.8, 1.9], [3.8, 3.8, 3.8, 1.9], exact=exact, trajectory=[1.0, 2.0])
    level = outcome([3.8] * 4, [3.8] * 4, exact=exact, trajectory=stalled)
    figure = plot_gallery({"s": falls, "g": level, "n": no_stall},
                          {"s": "stall", "g": "stall, no fall", "n": "fall, no stall"}, columns=3)
    notes = [[t for t in axis.texts if t.get_text() == ARTEFACT_NOTE] for axis in figure.axes]
    assert [len(n) for n in notes] == [1, 0, 0]
    assert notes[0][0].xy == (4, 1.9)


@pytest.mark.slow
def test_the_gallerys_stall_cases_carry_the_artefact_note():
    keys = ["float16-stall", "bfloat16-stall", "partial-last-batch"]
    figure = plot_gallery(gallery(keys), {key: mechanism(key).title for key in keys}, columns=3)
    assert [[t.get_text() for t in axis.texts] for axis in figure.axes[:3]] == [[ARTEFACT_NOTE], [ARTEFACT_NOTE], []]
    assert figure.axes[2].get_ylabel() == "difference from exact (%)"


def _cells(figure):
    axis = figure.axes[0]
    colours = {patch.get_gid(): to_hex(patch.get_facecolor()) for patch in axis.patches}
    hatches = {patch.get_gid(): patch.get_hatch() for patch in axis.patches}
    words = {(round(t.get_position()[1]), round(t.get_position()[0])): t.get_text() for t in axis.texts}
    return axis, colours, hatches, words


def test_diagnosis_matrix_cells_match_the_rows():
    rows = diagnosis({"aliased-reset": outcome([9.0, 8.5], [0.0, 0.0]),
                      "float16-overflow": outcome([math.inf, math.inf], [0.0, 0.0], top5=[1.0, 0.0],
                                                  weights_fine=False)})
    figure = plot_diagnosis(rows)
    axis, colours, hatches, words = _cells(figure)
    columns = [key for key in rows[0] if key != "mechanism"]
    assert columns[:len(EVIDENCE) + 1] == [*EVIDENCE, "fits"]
    for y, row in enumerate(rows):
        for x, key in enumerate(columns):
            assert words[(y, x)] == ("yes" if row[key] else "no")
            assert colours[f"cell {y} {x}"] == to_hex(DIAGNOSIS_COLOURS[row[key]])
    assert words[(0, len(EVIDENCE))] == "yes" and words[(1, len(EVIDENCE))] == "no"  # fits all
    assert [t.get_text() for t in axis.get_yticklabels()] == [f"{key}: {mechanism(key).title}"
                                                              for key in ("aliased-reset", "float16-overflow")]
    headers = [t.get_text().replace("\n", " ") for t in axis.get_xticklabels()]
    assert headers[:len(EVIDENCE) + 1] == [label for label, *_ in EVIDENCE.values()] + ["fits all"]
    assert not any(hatches.values()) and len(figure.legends) == 0


def test_diagnosis_matrix_marks_assumed_evidence():
    rows = [{"mechanism": "new-case", "console_real": True, "file_zero": False, "weights": True, "fits": False,
             "fits_observed": True}]
    figure = plot_diagnosis(rows, assumed={"weights", "not-a-column"})
    axis, _, hatches, words = _cells(figure)
    assert hatches == {"cell 0 0": None, "cell 0 1": None, "cell 0 2": "///", "cell 0 3": None, "cell 0 4": None}
    assert [words[(0, x)] for x in range(5)] == ["yes", "no", "yes", "no", "yes"]
    headers = [t.get_text() for t in axis.get_xticklabels()]
    assert headers[2].endswith("(assumed)") and not any(h.endswith("(assumed)") for h in headers[:2] + headers[3:])
    assert [h.replace("\n", " ") for h in headers[3:]] == ["fits all", "fits observed"]
    assert [t.get_text() for t in axis.get_yticklabels()] == ["new-case"]  # a key the gallery does not know
    assert "assumes" in axis.get_xlabel()
    assert save_figure(figure, io.BytesIO()).getvalue().startswith(b"\x89PNG")


def test_limit_rows_name_where_each_sum_overflows_or_stalls_and_the_early_loss():
    from accumbug.lessons.tables import limit_rows

    python = [160.0 * (k + 1) for k in range(500)]  # loss 10 per batch of 16
    overflow = [1.0] * 9 + [math.inf] * 491
    stall = [float(min(k, 100)) for k in range(500)]
    rows = limit_rows({"trained": {"incident-broken:python": python, "incident-broken:float16": overflow,
                                   "incident-fixed:float16": stall},
                       "short": {"incident-broken:float16": [1.0, 2.0]}})
    assert rows == [
        {"source": "trained", "tracker": "incident-broken:float16", "early_loss": 10.0, "inf_from": 10,
         "stalls_from": None},
        {"source": "trained", "tracker": "incident-fixed:float16", "early_loss": 10.0, "inf_from": None,
         "stalls_from": 101},
        {"source": "short", "tracker": "incident-broken:float16", "early_loss": None, "inf_from": None,
         "stalls_from": None},
    ]


def _method_a(values):
    total = 0
    for value in values:
        total += value
    return total


def _method_b(values):
    total = 0
    for value in values:
            total  +=  value
    return  total / len(values)


def test_side_by_side_ignores_indentation_and_spacing_and_marks_only_what_differs():
    """Lines equal once indentation and runs of spaces are dropped are not highlighted; names differ too."""
    only_a, only_b = differing_lines(_method_a, _method_b)
    assert only_a == ["def _method_a(values):", "return total"]
    assert only_b == ["def _method_b(values):", "return  total / len(values)"]
    html = source_side_by_side(_method_a, _method_b)._repr_html_()
    assert html.count("#fde0c5") == 4


def test_side_by_side_is_left_aligned_and_dedented():
    """Jupyter right-aligns table cells unless told; a method's source starts at column 0."""
    html = source_side_by_side(IncidentBrokenTracker.update, IncidentFixedTracker.update)._repr_html_()
    assert html.count("<td") == 2 and html.count("text-align:left") >= 4
    assert ">def update(self, loss, outputs, labels):<" in html


@pytest.mark.parametrize("value, digits, shown", [
    (-0.001, 2, "0.00"), (-0.0, 2, "0.00"), (0.004, 2, "0.00"), (-0.005001, 2, "-0.01"), (-2.5, 4, "-2.5000"),
    (1.23456, 4, "1.2346"),
])
def test_a_value_that_rounds_to_zero_prints_without_a_sign(value, digits, shown):
    assert fixed_digits(value, digits) == shown


def test_divergence_table_prints_no_negative_zero(run):
    rows = [{**row, "error_pct": -1e-4} for row in divergence_rows(run)]
    table = format_table(rows)
    assert "-0.00%" not in table and "0.00%" in table


def test_console_shows_the_incident_pair_as_printed_then_the_others_as_a_table(run):
    text = format_console(run)
    pair = [line for line in run.console_lines if line.endswith(("[incident-broken:python]",
                                                                 "[incident-fixed:python]"))]
    assert text.startswith("\n".join(pair) + "\n")
    others = [name for name in run.console if name not in ("incident-broken:python", "incident-fixed:python")]
    table = text.split("\n")[len(pair) + 3:]
    assert [line.split()[0] for line in table[2:]] == others
    assert "the same as incident-broken:python's" in text
    assert all(f"{run.console[name][-1]['loss']:.4f}" in line for name, line in zip(others, table[2:]))



def _eval_row(run, world, tracker, samples, loss=2.0, top1=10.0, top5=30.0):
    return {"run": run, "world": world, "tracker": tracker, "samples": samples, "loss": loss, "top1": top1,
            "top5": top5}


SINGLE = {"eval_total": [1032], "eval_loss": [2.0], "eval_top1": [10.0], "eval_top5": [30.0]}


def test_rank_eval_verdicts_hold_for_exact_counts_and_padding_by_world_size():
    rows = [_eval_row(f"{w} ranks", w, "exact", 1032) for w in (2, 3, 5)]
    rows += [_eval_row(f"{w} ranks", w, "naive-padded", w * math.ceil(1032 / w)) for w in (2, 3, 5)]
    verdicts = rank_eval_verdicts(rows, SINGLE)
    assert all(holds for _, holds in verdicts)
    assert "1,035 on 5 ranks" in verdicts[-1][0] and "every world size counts 1,032 samples" == verdicts[0][0]


@pytest.mark.parametrize("broken, failing", [
    (_eval_row("2 ranks", 2, "exact", 1031), 0),  # a sample lost
    (_eval_row("2 ranks", 2, "exact", 1032, top1=10.1), 1),  # hits differ
    (_eval_row("2 ranks", 2, "exact", 1032, loss=2.0001), 2),  # the loss differs beyond 1e-6
    (_eval_row("5 ranks", 5, "naive-padded", 1032), 3),  # the padding not counted
])
def test_rank_eval_verdicts_fail_on_each_departure(broken, failing):
    rows = [_eval_row("5 ranks", 5, "exact", 1032), _eval_row("5 ranks", 5, "naive-padded", 1035), broken]
    assert [holds for _, holds in rank_eval_verdicts(rows, SINGLE)] == [i != failing for i in range(4)]


def test_format_declared_states_one_row_per_tracker_and_a_column_per_state():
    table = format_declared_states(make_trackers(["exact", "naive-rank-mean"]))
    header, *rows = [line for line in table.splitlines() if line.strip() and not set(line) <= set("-+| ")]
    assert "loss_sum" in header and "means" in header
    assert [row.split()[0] for row in rows] == ["exact", "naive-rank-mean"]


def test_format_sums_at_prints_each_sum_after_the_given_batches():
    text = format_sums_at({"incident-broken:float16": [1.0, 3.0, 6.0], "incident-broken:python": [1.0, 3.0, 7.5]},
                          (1, 3))
    assert text.splitlines() == ["after batch   1: float16       1.0, python       1.0",
                                 "after batch   3: float16       6.0, python       7.5"]
