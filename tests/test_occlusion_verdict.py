"""Issue 18's claims read off an occlusion benchmark's summary (benchmarks/occlusion_verdict.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))  # the verdict's module, imported in the tests

import occlusion_verdict as verdict  # noqa: E402

KINDS = ("scarf", "hair")


def _score(mean: float, std: float = 0.01) -> dict[str, Any]:
    return {"mean": mean, "std": std, "low": mean - 0.02, "high": mean + 0.02, "per_seed": [mean - std, mean + std]}


def _share(share: float) -> dict[str, Any]:
    return {"share": share, "std": 0.05, "low": share - 0.05, "high": share + 0.05, "undefined_draws": 0,
            "per_seed": [share - 0.05, share + 0.05], "reference": "R-clean"}  # fmt: skip


def _difference(candidate: str, baseline: str, scores: dict[str, dict[str, Any]]) -> dict[str, Any]:
    value = scores[candidate]["mean"] - scores[baseline]["mean"]
    return {"candidate": candidate, "baseline": baseline, "difference": value, "std": 0.01, "low": value - 0.01,
            "high": value + 0.01, "wins": float(value > 0), "per_seed": [value, value]}  # fmt: skip


def _group(scores: dict[str, float], shares: dict[str, float], pairs: list[tuple[str, str]]) -> dict[str, Any]:
    entries = {name: _score(value) for name, value in scores.items()}
    return {
        "scores": entries,
        "recoveries": {name: _share(value) for name, value in shares.items()},
        "comparisons": {f"{c} vs {b}": _difference(c, b, entries) for c, b in pairs},
    }


def _summary(restored: float = 0.62, fill: float = 0.50, robust: float = 0.55, clean_restored: float = 0.80) -> dict:
    """A summary of the benchmark's shape: R-clean clean 0.80, occluded 0.40, restored ``restored``; one fill; R-aug
    on occluded faces at ``robust``; R-clean's clean faces through the restorer at ``clean_restored``."""
    scores = {
        "R-clean clean": 0.80,
        "R-clean occluded": 0.40,
        "R-clean restored": restored,
        "R-clean restored_mirror": fill,
        "R-clean clean_restored": clean_restored,
        "R-aug clean": 0.78,
        "R-aug occluded": robust,
        "R clean": 0.79,
        "R+restorer clean": 0.79,
        "R+restorer occluded": 0.45,
    }
    share = (restored - 0.40) / 0.40
    pairs = [
        ("R-clean restored", "R-aug occluded"),
        ("R+restorer occluded", "R-aug occluded"),
        ("R-clean restored", "R-clean restored_mirror"),
        ("R+restorer clean", "R clean"),
        ("R-clean clean_restored", "R-clean clean"),
    ]
    groups = {"all": _group(scores, {"R-clean restored": share}, pairs)}
    for index, kind in enumerate(KINDS):  # the second kind: restoration behind R-aug
        kind_scores = dict(scores, **({"R-aug occluded": 0.70} if index else {}))
        groups[kind] = _group(kind_scores, {"R-clean restored": share - 0.1 * index}, pairs)
    return {
        "seeds": [0, 1, 2],
        "level": 0.95,
        "resamples": 2000,
        "units": 12,
        "faces": {"all": 4032, **{k: 576 for k in KINDS}},
        "fills": ["mirror"],
        "results": {"expr/f1_macro": groups},
    }


def test_claim_one_holds_at_half_the_cost_won_back_and_a_generator_above_every_fill() -> None:
    claim = verdict.recovery_claim(_summary(restored=0.62, fill=0.50))
    assert claim.holds
    text = "\n".join(claim.lines)
    assert "wins back 0.55 [0.50, 0.60]" in text and "| hair | 0.45 [0.40, 0.50] |" in text
    assert "| mirror | +0.120 [0.110, 0.130] | 1.00 |" in text


@pytest.mark.parametrize(
    ("restored", "fill"),
    [(0.59, 0.50), (0.62, 0.63)],  # under half won back; a fill ahead of the generator
)
def test_claim_one_fails_under_half_or_behind_a_fill(restored: float, fill: float) -> None:
    assert not verdict.recovery_claim(_summary(restored=restored, fill=fill)).holds


def test_claim_one_needs_r_clean_restored_and_cannot_pass_without_fills() -> None:
    summary = _summary()
    summary["fills"] = []
    claim = verdict.recovery_claim(summary)
    assert not claim.holds and "cannot be judged" in claim.lines[-1]
    del summary["results"]["expr/f1_macro"]["all"]["recoveries"]["R-clean restored"]
    with pytest.raises(KeyError, match="R-clean restored"):
        verdict.recovery_claim(summary)


def test_claim_two_names_the_best_restoring_pipeline_and_the_winner_per_kind() -> None:
    claim = verdict.best_pipeline_claim(_summary(restored=0.60, robust=0.55))
    assert claim.holds
    text = "\n".join(claim.lines)
    assert "with restoration on occluded faces: **R-clean restored**" in text
    assert "strongest without: **R-aug occluded**" in text
    assert "| all | 0.600 [0.580, 0.620] | +0.050 [0.040, 0.060], 1.00 |" in text
    assert "scarf: R-clean restored (0.600); hair: R-aug occluded (0.700)." in text  # per kind, either way
    assert "| R-clean restored | with | 0.600 [0.580, 0.620] | 0.800 [0.780, 0.820] |" in text  # its clean score
    losing = verdict.best_pipeline_claim(_summary(restored=0.60, robust=0.65))
    assert not losing.holds and "Highest of all: **R-aug occluded**" in losing.lines[0]


def test_claim_three_holds_only_within_the_baselines_seed_spread() -> None:
    assert verdict.clean_cost_claim(_summary(clean_restored=0.795)).holds  # −0.005, spread 0.01
    failing = verdict.clean_cost_claim(_summary(clean_restored=0.77))
    assert not failing.holds
    assert "| R-clean clean_restored | R-clean clean | -0.030 [-0.040, -0.020] | 0.010 | **no** |" in failing.lines


def test_the_command_writes_every_claim_from_a_summary_file(tmp_path: Path) -> None:
    summary = tmp_path / "summary.json"
    summary.write_text(json.dumps(_summary()))
    output = tmp_path / "verdict.md"
    command = [sys.executable, str(REPO / "benchmarks/occlusion_verdict.py"), str(summary), "--output", str(output)]
    subprocess.run(command, check=True, capture_output=True)
    text = output.read_text()
    assert "| 1. Blind restoration wins back at least half of what occlusion costs | yes |" in text
    assert "| 3. Restoration costs nothing on unoccluded faces | yes |" in text
    assert f"python benchmarks/occlusion_verdict.py {summary}" in text
    wrong = subprocess.run([*command[:3], "--metric", "au/f1_mean"], capture_output=True, text=True)
    assert wrong.returncode == 2 and "au/f1_mean is not in" in wrong.stderr


def test_the_benchmark_writes_the_verdict_beside_its_summary_or_says_why_not(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import occlusion_restoration as occlusion

    occlusion.write_verdict(_summary(), tmp_path)
    assert "| 2. A pipeline with restoration reads occluded faces better" in (tmp_path / verdict.VERDICT_MD).read_text()
    summary = _summary()
    summary["results"]["expr/f1_macro"]["all"]["recoveries"].clear()  # R-clean not evaluated on restored faces
    occlusion.write_verdict(summary, tmp_path / "other")
    assert not (tmp_path / "other").exists()
    assert "no verdict.md: 'R-clean restored' has no recovery share" in capsys.readouterr().out
