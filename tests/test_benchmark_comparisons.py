"""The comparison rules behind the fusion benchmarks' claims: best single model per seed and metric, wins."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import fusion_ablation  # noqa: E402

EXPR, AROUSAL = "test/expr/f1_macro", "test/va/ccc_arousal"


def _metrics(expr: float, arousal: float) -> dict[str, float]:
    return {EXPR: expr, AROUSAL: arousal, "test/va/ccc_valence": 0.0, "test/au/f1_mean": 0.0}


def test_single_run_kinds_name_every_length_multiple() -> None:
    assert [fusion_ablation.single_kind(f) for f in (1, 2, 4)] == ["single", "single_long", "single_x4"]
    for kind in ("single", "single_long", "single_x4", "single_x12"):
        assert fusion_ablation.single_kind(fusion_ablation.single_factor(kind)) == kind
    assert not any(fusion_ablation.is_single(c) for c in ("fusion/all", "fusion_from_singles", "single_x/face"))


def test_the_ablation_compares_two_stage_fusion_with_longer_singles_and_its_dropout_twin(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
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
