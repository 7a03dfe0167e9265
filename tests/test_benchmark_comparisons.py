"""The comparison rules behind the fusion benchmarks' claims: best single model per seed and metric, wins."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import second_cohort  # noqa: E402

EXPR, AROUSAL = "test/expr/f1_macro", "test/va/ccc_arousal"


def _metrics(expr: float, arousal: float) -> dict[str, float]:
    return {EXPR: expr, AROUSAL: arousal, "test/va/ccc_valence": 0.0, "test/au/f1_mean": 0.0}


def test_fused_runs_are_compared_with_the_best_single_model_of_each_seed_and_metric() -> None:
    per_seed = {
        0: {
            "single/face": _metrics(0.40, 0.30),
            "single/audio": _metrics(0.30, 0.78),
            "single_long/face": _metrics(0.45, 0.35),
            "fusion_from_singles": _metrics(0.50, 0.77),
        },
        1: {
            "single/face": _metrics(0.44, 0.31),
            "single/audio": _metrics(0.29, 0.80),
            "single_long/face": _metrics(0.42, 0.33),
            "fusion_from_singles": _metrics(0.43, 0.81),
        },
    }
    derived = second_cohort.summarise(per_seed)["derived"]
    # Expressions: the best single is the long face run in seed 0 (0.45) and the short one in seed 1 (0.44).
    assert derived[f"fusion_from_singles_minus_best_single_per_seed/{EXPR}"] == pytest.approx([0.05, -0.01])
    assert derived[f"fusion_from_singles_beats_best_single_in_seeds/{EXPR}"] == (1, 2)
    # Arousal: audio is the best single in both seeds.
    assert derived[f"fusion_from_singles_minus_best_single_per_seed/{AROUSAL}"] == pytest.approx([-0.01, 0.01])
    assert derived[f"best_single/fusion_from_singles/{AROUSAL}"][0] == pytest.approx(0.79)
    table = second_cohort.markdown(second_cohort.summarise(per_seed), [0, 1], cohort_seed=1)
    assert "| expr F1 | 0.445 ± 0.007 | 0.020 ± 0.042 | +0.050, -0.010 | 1/2 |" in table


def test_conditions_missing_from_a_seed_are_left_out() -> None:
    per_seed = {
        0: {"single/face": _metrics(0.4, 0.3), "fusion": _metrics(0.5, 0.4)},
        1: {"single/face": _metrics(0.4, 0.3)},
    }
    summary = second_cohort.summarise(per_seed)
    assert list(summary["conditions"]) == ["single/face"]
    assert not any(key.startswith("fusion_") for key in summary["derived"])


def test_longer_single_runs_of_any_multiple_join_the_baseline() -> None:
    import fusion_ablation  # noqa: PLC0415  (found through the sys.path line above)

    assert [fusion_ablation.single_kind(f) for f in (1, 2, 4)] == ["single", "single_long", "single_x4"]
    for kind in ("single", "single_long", "single_x4", "single_x12"):
        assert fusion_ablation.single_kind(fusion_ablation.single_factor(kind)) == kind
    assert not any(fusion_ablation.is_single(c) for c in ("fusion/all", "fusion_from_singles", "single_x/face"))
    per_seed = {
        0: {
            "single/face": _metrics(0.30, 0.30),
            "single_long/face": _metrics(0.45, 0.35),
            "single_x4/face": _metrics(0.60, 0.40),
            "single/audio": _metrics(0.30, 0.78),
            "fusion_from_singles": _metrics(0.55, 0.80),
        }
    }
    derived = second_cohort.summarise(per_seed)["derived"]
    # The 4x face run is the expression baseline: fusion loses by 0.05 although it beats the 2x run.
    assert derived[f"fusion_from_singles_minus_best_single_per_seed/{EXPR}"] == pytest.approx([-0.05])
    assert derived[f"fusion_from_singles_beats_best_single_in_seeds/{EXPR}"] == (0, 1)


def test_the_ablation_compares_two_stage_fusion_with_longer_singles_and_its_dropout_twin(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import fusion_ablation  # noqa: PLC0415  (found through the sys.path line above)

    monkeypatch.setitem(fusion_ablation.DROPOUT_PAIRS, "fusion_from_singles", "fusion_from_singles_dropout")
    monkeypatch.setattr(fusion_ablation, "SINGLE_LENGTH_FACTORS", [2, 4])
    modalities = ("face", "audio", "depth", "physio")
    conditions = {f"{kind}/{m}": _metrics(0.2, 0.2) for kind in ("single", "single_long") for m in modalities}
    conditions["single_x4/face"] = _metrics(0.60, 0.40)
    conditions["single/audio"] = _metrics(0.30, 0.78)
    for name, expr in (("fusion", 0.4), ("fusion_dropout", 0.4), ("fusion_from_singles", 0.62)):
        conditions[f"{name}/all"] = _metrics(expr, 0.80)
        for m in fusion_ablation.MODALITIES:
            conditions[f"{name}/without_{m}"] = _metrics(expr - (0.2 if m == "face" else 0.0), 0.80)
    conditions["fusion_from_singles_dropout/all"] = _metrics(0.61, 0.79)
    for m in fusion_ablation.MODALITIES:
        conditions[f"fusion_from_singles_dropout/without_{m}"] = _metrics(0.61 - (0.1 if m == "face" else 0.0), 0.79)
    summary = fusion_ablation.summarise({0: conditions})
    derived = summary["derived"]
    assert derived[f"best_single_any_length/{EXPR}"][0] == pytest.approx(0.60)  # the 4x face run
    assert derived[f"from_singles_minus_best_single/{EXPR}"][0] == pytest.approx(0.02)
    assert derived[f"drop/fusion_from_singles/face/{EXPR}"][0] == pytest.approx(0.2)
    assert derived[f"drop/fusion_from_singles_dropout/face/{EXPR}"][0] == pytest.approx(0.1)
    assert f"best_single_validation_chosen/{EXPR}" not in derived  # no single run recorded a validation score
    conditions["single_long/face"]["val/score"] = 0.9  # the 2x face run (0.2 F1) has the best validation score
    for condition in (c for c in conditions if fusion_ablation.is_single(c)):
        conditions[condition].setdefault("val/score", 0.1)
    chosen = fusion_ablation.summarise({0: conditions})["derived"]
    # The 4x face run (0.60) is passed over, so the expression baseline is the 1x audio run (0.30).
    assert chosen[f"best_single_validation_chosen/{EXPR}"][0] == pytest.approx(0.30)
    assert chosen[f"from_singles_minus_validation_chosen/{EXPR}"][0] == pytest.approx(0.32)
    table = fusion_ablation.markdown(summary, seeds=1, epochs=10)
    assert "single/m, single_long/m, single_x4/m" in table
    assert "fusion_from_singles vs fusion_from_singles_dropout" in table
    assert "| expr F1 | face | 0.200 | 0.100 |" in table


def _scored(expr: float, arousal: float, validation: float) -> dict[str, float]:
    return {**_metrics(expr, arousal), "val/score": validation}


def test_a_second_baseline_chooses_each_modalitys_length_by_validation_not_by_test() -> None:
    per_seed = {
        0: {
            "single/face": _scored(0.30, 0.30, validation=0.40),
            "single_x4/face": _scored(0.60, 0.40, validation=0.60),
            "single/audio": _scored(0.30, 0.78, validation=0.43),
            "single_x4/audio": _scored(0.32, 0.80, validation=0.41),  # better on test, worse on validation
            "fusion_from_singles": _metrics(0.62, 0.79),
        }
    }
    derived = second_cohort.summarise(per_seed)["derived"]
    # By test figure the 4x audio run (0.80) is the arousal baseline; by validation the 1x run (0.78) is.
    assert derived[f"fusion_from_singles_minus_best_single_per_seed/{AROUSAL}"] == pytest.approx([-0.01])
    assert derived[f"fusion_from_singles_minus_validation_chosen_per_seed/{AROUSAL}"] == pytest.approx([0.01])
    assert derived[f"fusion_from_singles_minus_validation_chosen_per_seed/{EXPR}"] == pytest.approx([0.02])
    table = second_cohort.markdown(second_cohort.summarise(per_seed), [0], cohort_seed=1)
    assert "length is chosen by its validation" in table
    # Runs without a recorded validation score (older per-seed files) give no such baseline.
    del per_seed[0]["single/face"]["val/score"]
    assert not any("validation_chosen" in key for key in second_cohort.summarise(per_seed)["derived"])


def _finished_run(folder: Path, validation: float) -> None:
    """A run folder as ``mfer fit`` leaves it: run.json naming the best checkpoint and its score, results-test.json."""
    (folder / "checkpoints").mkdir(parents=True)
    (folder / "checkpoints/best-epoch=03.ckpt").write_bytes(b"weights")
    (folder / "checkpoints/last.ckpt").write_bytes(b"weights")
    record = {
        "experiment": folder.parent.name,
        "name": folder.name,
        "best_checkpoint": "checkpoints/best-epoch=03.ckpt",
        "best_score": validation,
        "monitor": "val/score",
        "last_checkpoint": "checkpoints/last.ckpt",
    }
    (folder / "run.json").write_text(json.dumps(record))
    (folder / "results-test.json").write_text(json.dumps({"condition": "test", "metrics": {}}))


def test_the_subject_bootstrap_finds_every_single_run_and_the_validation_chosen_ones(tmp_path: Path) -> None:
    import subject_bootstrap  # noqa: PLC0415  (found through the sys.path line above)

    seed = tmp_path / "seed0"
    for kind, scores in {"single": (0.30, 0.40), "single_long": (0.35, 0.38), "single_x4": (0.50, 0.20)}.items():
        for modality, score in zip(("face", "audio"), scores, strict=True):
            _finished_run(seed / kind / modality, score)
    # Unfinished: a fit killed after its first epoch (a last checkpoint, run.json without a best checkpoint).
    (seed / "single_x4/depth/checkpoints").mkdir(parents=True)
    (seed / "single_x4/depth/checkpoints/last.ckpt").write_bytes(b"weights")
    (seed / "single_x4/depth/run.json").write_text(json.dumps({"experiment": "single_x4", "name": "depth"}))
    # Finished fit whose test after fit is missing: not a baseline either.
    _finished_run(seed / "single_x4/physio", 0.99)
    (seed / "single_x4/physio/results-test.json").unlink()
    _finished_run(seed / "fusion_from_singles", 0.6)
    (seed / "latest").symlink_to("fusion_from_singles")  # the experiment's latest completed fit
    fused, singles, chosen = subject_bootstrap.seed_models(seed, "fusion_from_singles")
    assert fused == seed / "fusion_from_singles"
    assert sorted(singles) == sorted(
        f"{k}/{m}" for k in ("single", "single_long", "single_x4") for m in ("face", "audio")
    )
    assert sorted(chosen) == ["single/audio", "single_x4/face"]
    with pytest.raises(SystemExit, match="has not finished"):
        subject_bootstrap.seed_models(seed, "fusion_from_singles_dropout")


def test_the_subject_bootstrap_tables_carry_every_seed_and_the_mean() -> None:
    import subject_bootstrap  # noqa: PLC0415

    entry = {
        "subjects": 12,
        "observed": [0.05, -0.01],
        "interval95": [[0.01, 0.09], [-0.04, 0.02]],
        "win_fraction": [0.99, 0.3],
        "mean_observed": 0.02,
        "mean_interval95": [-0.005, 0.045],
        "mean_win_fraction": 0.9,
    }
    report = {f"{b}/{m}": entry for b in ("best_single", "validation_chosen") for m in subject_bootstrap.METRICS}
    table = subject_bootstrap.markdown({"test split": report}, [0, 1], "fusion_from_singles", 2000)
    assert "| expr F1 | 1 | -0.010 | [-0.040, +0.020] | 30.0% |" in table
    assert "| CCC arousal | mean | +0.020 | [-0.005, +0.045] | 90.0% |" in table
    assert table.count("**test split, 12 subjects;") == 2
    losses = {**entry, "plain_loss": [0.2, 0.1], "robust_loss": [0.05, 0.05]}
    robustness = subject_bootstrap.robustness_markdown(
        {"test split": {"fusion|fusion_dropout/audio/va/ccc_arousal": losses}}, 2000
    )
    assert (
        "| fusion vs fusion_dropout | audio | CCC arousal | +0.150 | +0.050 | +0.020 | [-0.005, +0.045] | 90.0% |"
        in robustness
    )
