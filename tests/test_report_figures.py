"""`mfer report` figures: valid PNGs from hand-made numbers (NaN too); the report shows them only with data."""

import json
import math
import re
import struct
from pathlib import Path

import numpy as np
import pytest
from test_report import F1_FACE, F1_FUSED, _predictions, write_results

from multimodal_fer.reporting import build_report, write_report
from multimodal_fer.reporting import figure_sections as sections_module
from multimodal_fer.reporting.figures import heat_map_figure, new_figure, png_bytes, setting_bars_figure
from multimodal_fer.reporting.restoration_examples import PNG_SIGNATURE, latest_grid
from multimodal_fer.reporting.va_figures import va_density_figure


def png_size(png: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk, after checking the signature."""
    assert png[:8] == PNG_SIGNATURE and png[12:16] == b"IHDR"
    return struct.unpack(">II", png[16:24])


def test_heat_map_with_nan_cells_is_a_png_that_grows_with_its_grid() -> None:
    values = np.array([[0.5, np.nan, 0.2], [np.nan, np.nan, np.nan], [0.9, 0.1, -0.3]])
    small = heat_map_figure(values, ["a", "b", "c"], ["none", "audio", "face"], "t", "F1", "withheld")
    width, height = png_size(small)
    assert width > 200 and height > 100
    bigger = heat_map_figure(
        np.full((9, 12), np.nan), [f"row {i}" for i in range(9)], list("abcdefghijkl"), "t", "", ""
    )
    assert png_size(bigger)[0] > width and png_size(bigger)[1] > height


def test_setting_bars_with_missing_means_and_single_runs() -> None:
    png = setting_bars_figure(
        ["face", "audio", "none"], [0.4, -0.1, math.nan], [0.02, math.nan, math.nan], [3, 1, 0], "va/ccc", "title"
    )
    width, height = png_size(png)
    more = setting_bars_figure(
        [f"s{i}" for i in range(15)], list(np.linspace(0, 1, 15)), [0.1] * 15, [3] * 15, "m", "t"
    )
    assert png_size(more)[0] == width and png_size(more)[1] > height


def test_va_density_leaves_out_unlabeled_samples_and_survives_an_empty_panel() -> None:
    rng = np.random.default_rng(0)
    true = rng.uniform(-1, 1, (500, 2))
    true[::3, 0] = np.nan
    true[:, 1] = np.nan  # no arousal labels at all
    predicted = np.clip(0.6 * np.nan_to_num(true) + rng.normal(0, 0.3, true.shape), -1.4, 1.4)
    png = va_density_figure(true, predicted, ["valence", "arousal"], ["CCC 0.500 ± 0.010 (n=3)", "CCC – (n=0)"], "t")
    width, height = png_size(png)
    assert width > 500 and height > 300
    three = va_density_figure(np.zeros((4, 3)), np.zeros((4, 3)), ["v", "a", "d"], ["", "", ""], "t")
    assert png_size(three)[0] > width


def _recording(monkeypatch: pytest.MonkeyPatch, name: str) -> list[tuple]:
    """Record the arguments every call of figure_sections.<name> gets (the figure is still drawn)."""
    calls: list[tuple] = []
    real = getattr(sections_module, name)

    def record(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(sections_module, name, record)
    return calls


@pytest.fixture
def suite(tmp_path: Path) -> Path:
    """A modality suite: face and face+audio × 3 seeds with predictions; face+audio also tested without audio.

    Face+audio predicts the affect dimensions better (the best mean CCC), face is the reference.
    """
    root = tmp_path / "modalities"
    for seed, (face, fused) in enumerate(zip(F1_FACE, F1_FUSED, strict=True)):
        for name, modalities, f1 in (("face", ["face"], face), ("fused", ["face", "audio"], fused)):
            cell = {"data.init_args.modalities": modalities, "seed_everything": seed}
            folder = root / f"{name}-seed{seed}"
            metrics = {"expr/f1_macro": f1, "va/ccc_arousal": f1 / 2}
            predictions = _predictions(seed, noise=1.4 if name == "face" else 0.8)
            if name == "fused":  # the better affect model: the best mean CCC
                predictions["output_va"] = (0.95 * np.nan_to_num(predictions["target_va"])).astype(np.float32)
            write_results(folder, seed, metrics, modalities=tuple(modalities), cell=cell, predictions=predictions)
            if name == "fused":
                withheld = {"expr/f1_macro": face - 0.1 * seed, "va/ccc_arousal": 0.2}
                write_results(folder, seed, withheld, "test-withheld-audio", tuple(modalities), cell=cell)
    return root


def _section(report, condition: str):
    found = [section for section in report.sections if section.title.endswith(f" · {condition}")]
    assert len(found) == 1, [section.title for section in report.sections]
    return found[0]


def test_suite_report_shows_bars_missing_modality_au_and_density_figures(
    suite: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bars = _recording(monkeypatch, "setting_bars_figure")
    heat_maps = _recording(monkeypatch, "heat_map_figure")
    report = build_report([suite], reference=["modalities=[face]"], resamples=20)
    test = _section(report, "test")
    lead = [image.title for image in test.lead_images]
    assert [title.split(": ", 1)[1].split(" (")[0] for title in lead] == [
        "expr/f1_macro by setting",
        "au/f1_mean by setting",
        "va/ccc_arousal by setting",
        "va/ccc_valence by setting",
        "expr/f1_macro with modalities withheld at test time",  # the withheld tests store only these two
        "va/ccc_arousal with modalities withheld at test time",
    ]
    assert all(png_size(image.png) for image in test.lead_images)
    # The bars are the summary table's mean ± std (recomputed from the predictions, as the table's cells).
    summary = next(table for table in test.tables if table.name.endswith("test-summary"))
    labels, means, stds, counts, metric, _ = bars[0]
    assert metric == "expr/f1_macro" and list(counts) == [3, 3]
    column = summary.columns.index("expr/f1_macro")
    for label, mean, std in zip(labels, means, stds, strict=True):
        shown = next(row[column] for row in summary.rows if row[0] == label)
        assert shown == f"{mean:.3f} ± {std:.3f}"
    # Missing modalities: rows the settings, "none" the summary's mean, audio withheld only for the fused setting.
    grid, rows, columns = next(call[:3] for call in heat_maps if call[2][0] == "none")
    assert columns == ["none", "audio"] and rows == labels
    fused = rows.index("data.modalities=[face,audio]")
    assert grid[fused, 0] == pytest.approx(means[fused])
    assert grid[fused, 1] == pytest.approx(np.mean([face - 0.1 * seed for seed, face in enumerate(F1_FACE)]))
    assert np.isnan(grid[1 - fused, 1])
    others = [image.title for image in test.images]
    assert any("AU F1 at threshold 0.5 per AU" in title for title in others)
    density = [title for title in others if "predicted vs true" in title]
    assert len(density) == 2 and "(reference)" in density[0] and "(best mean CCC)" in density[1]
    withheld = _section(report, "test-withheld-audio")
    assert not any("withheld at test time" in image.title for image in withheld.lead_images)
    assert len(withheld.lead_images) == 0  # one setting: nothing to compare in bars
    page = write_report(report, tmp_path / "out" / "report.html").html.read_text()
    first_bar = page.index("expr/f1_macro by setting")
    assert page.index("test-summary") < first_bar < page.index("test-per-class-f1")
    assert page.count("data:image/png;base64,") == sum(len(s.images) + len(s.lead_images) for s in report.sections)


def test_without_withheld_tests_or_predictions_those_figures_are_left_out(tmp_path: Path) -> None:
    root = tmp_path / "stored"
    for seed in range(2):
        for name, modalities in (("face", ("face",)), ("fused", ("face", "audio"))):
            metrics = {"expr/f1_macro": 0.4 + 0.1 * seed + 0.05 * len(modalities), "restoration/psnr_face": 20.0}
            write_results(root / f"{name}-seed{seed}", seed, metrics, modalities=modalities)
    section = _section(build_report([root]), "test")
    assert [image.title.split(": ", 1)[1].split(" (")[0] for image in section.lead_images] == [
        "expr/f1_macro by setting"
    ]
    assert section.images == []
    assert any("Restoration examples: none shown; no run folder" in note for note in section.notes)


def _grid_png(colour: str) -> bytes:
    figure = new_figure(1.0, 2.0)
    figure.patch.set_facecolor(colour)
    return png_bytes(figure)


@pytest.mark.parametrize("allowed", [True, False, None])
def test_restoration_grids_only_where_the_data_card_allows(tmp_path: Path, allowed: bool | None) -> None:
    folder = tmp_path / "restoration" / "run-seed0"
    path = write_results(folder, 0, {"restoration/psnr_face": 21.0, "mask/iou": 0.4})
    write_results(folder, 0, {"restoration/psnr_face": 20.0}, condition="test-last")
    grids = folder / "restoration_grids" / "abc123"
    grids.mkdir(parents=True)
    for epoch, colour in ((1, "red"), (3, "blue"), (2, "green")):
        (grids / f"epoch_{epoch:03d}.png").write_bytes(_grid_png(colour))
    assert latest_grid(folder) == grids / "epoch_003.png"
    if allowed is not None:
        results = json.loads(path.read_text())
        results["data"]["face_media_allowed"] = allowed
        path.write_text(json.dumps(results))
    report = build_report([tmp_path / "restoration"])
    test = _section(report, "test")
    images = [image for image in test.images if "restoration examples" in image.title]
    notes = [note for s in report.sections for note in s.notes if note.startswith("Restoration examples")]
    if allowed:
        assert len(images) == 1 and images[0].png == (grids / "epoch_003.png").read_bytes()
        assert re.search(r"run run-seed0, restoration_grids/abc123/epoch_003\.png", images[0].title)
        assert notes == []
    else:
        assert images == [] and len(notes) == 1
        assert ("does not allow" if allowed is False else "does not record whether") in notes[0]
    # Each run's grid is dealt with once: the test-last section neither repeats it nor notes it again.
    assert not any("restoration examples" in image.title for image in _section(report, "test-last").images)
