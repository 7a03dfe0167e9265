"""mfer calibrate-restorer: every mask setting scored on a validation occlusion split, the best written as a run
folder that loads like a restoration run, with the same weights; ties keep the trained setting; clear refusals."""

import dataclasses
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from multimodal_fer.benchmarking.run_lookup import best_checkpoint
from multimodal_fer.cli import main
from multimodal_fer.evaluation.occlusion_inputs import open_occlusion_split
from multimodal_fer.evaluation.restorer_calibration import calibrate_restorer, score_operating_points
from multimodal_fer.models.restoration import (
    PatchDiscriminator,
    load_discriminator,
    load_restorer,
)

from conftest import CONFIGS, tiny_data_args
from restoration_fakes import restorer_run

QUICKSTART = str(CONFIGS / "quickstart.yaml")


@pytest.fixture(scope="module")
def validation_setup(tiny_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """A validation occlusion split of the tiny cache, a one-epoch recogniser and a tiny restorer run."""
    root = tmp_path_factory.mktemp("calibration")
    split = root / "occluded_val"
    main(
        [
            "occlusion-split",
            "--config",
            QUICKSTART,
            *tiny_data_args(tiny_cache),
            "--split",
            "val",
            "--output",
            str(split),
        ]
    )
    runs = ["--run.root", str(root / "runs"), "--run.experiment=seed0", "--run.name=critic", "--trainer.logger=false"]
    settings = ["--trainer.accelerator=cpu", "--trainer.max_epochs=1", "--trainer.limit_train_batches=2"]
    main(
        [
            "fit",
            "--config",
            QUICKSTART,
            *tiny_data_args(tiny_cache),
            *runs,
            *settings,
            "--data.init_args.modalities=[face]",
        ]
    )
    return SimpleNamespace(
        root=root,
        split=split,
        recogniser=root / "runs" / "seed0" / "critic",
        restorer=restorer_run(
            root / "runs" / "seed0" / "restoration", discriminator=PatchDiscriminator(widths=(8, 16))
        ),
    )


def test_every_setting_is_scored_and_the_best_is_written_as_a_run_that_loads(validation_setup: SimpleNamespace) -> None:
    setup = validation_setup
    output = setup.root / "runs" / "seed0" / "restoration_calibrated"
    main(
        [
            "calibrate-restorer",
            f"--restorer={setup.restorer}",
            f"--recogniser={setup.recogniser}",
            f"--split={setup.split}",
            "--thresholds",
            "0.3",
            "0.6",
            "--dilations",
            "0",
            "2",
        ]
    )  # no --output: <restorer run>_calibrated
    record = json.loads((output / "calibration.json").read_text())
    settings = [(p["threshold"], p["dilation"]) for p in record["grid"]]
    assert settings == [(0.3, 0), (0.3, 2), (0.45, 1), (0.6, 0), (0.6, 2)]  # the grid and the trained setting
    assert record["trained"]["threshold"] == 0.45 and record["trained"]["dilation"] == 1
    best = max(p["f1_macro"] for p in record["grid"])
    assert record["chosen"]["f1_macro"] == best and record["chosen"] in record["grid"]
    assert record["faces"] == open_occlusion_split(setup.split).num_faces and 0.0 <= record["occluded_f1"] <= 1.0
    assert record["split"] == str(setup.split.resolve()) and record["recogniser"].endswith(".ckpt")

    calibrated = load_restorer(best_checkpoint(output))  # a run folder like a restoration run's
    original = load_restorer(best_checkpoint(setup.restorer))
    assert (calibrated.mask_threshold, calibrated.mask_dilation) == (
        record["chosen"]["threshold"],
        record["chosen"]["dilation"],
    )
    for name, tensor in original.state_dict().items():  # the weights are not touched
        assert torch.equal(tensor, calibrated.state_dict()[name]), name
    # The restoration fit's discriminator travels along: the joint fine-tuning starts from it.
    trained_critic, carried = (
        load_discriminator(best_checkpoint(setup.restorer)),
        load_discriminator(best_checkpoint(output)),
    )
    for name, tensor in trained_critic.state_dict().items():
        assert torch.equal(tensor, carried.state_dict()[name]), name
    from multimodal_fer.tasks.recogniser_loading import load_fer_model

    recogniser = load_fer_model(best_checkpoint(setup.recogniser))[0].eval()
    point = (calibrated.mask_threshold, calibrated.mask_dilation)
    (again,), _ = score_operating_points(calibrated, recogniser, open_occlusion_split(setup.split), [point])
    assert again.f1_macro == pytest.approx(record["chosen"]["f1_macro"])  # the saved setting is the one scored

    (setup.root / "runs" / "seed0" / "newest").symlink_to("restoration")  # a link (like `latest`) names its run
    main(
        ["calibrate-restorer", f"--restorer={setup.root / 'runs/seed0/newest'}", f"--recogniser={setup.recogniser}"]
        + [f"--split={setup.split}", "--thresholds", "0.3", "--overwrite"]
    )
    assert not (setup.root / "runs" / "seed0" / "newest_calibrated").exists()
    assert [p["threshold"] for p in json.loads((output / "calibration.json").read_text())["grid"]] == [0.3, 0.3, 0.45]
    with pytest.raises(FileExistsError, match="--overwrite"):
        calibrate_restorer(setup.restorer, setup.recogniser, setup.split, output)
    calibrate_restorer(setup.restorer, setup.recogniser, setup.split, output, thresholds=(0.5,), overwrite=True)
    assert [p["threshold"] for p in json.loads((output / "calibration.json").read_text())["grid"]] == [0.45, 0.5, 0.5]


class _ConstantRecogniser(nn.Module):
    """Predicts the first expression for every face, whatever it sees."""

    def __init__(self, classes: int) -> None:
        super().__init__()
        self.classes = classes

    def forward(self, inputs: dict[str, torch.Tensor], present: dict[str, torch.Tensor]) -> SimpleNamespace:
        logits = torch.zeros(inputs["face"].shape[0], self.classes)
        logits[:, 0] = 1.0
        return SimpleNamespace(heads={"expr": logits})


def test_a_tie_keeps_the_trained_setting_and_the_restorer_is_put_back(validation_setup: SimpleNamespace) -> None:
    split = open_occlusion_split(validation_setup.split)
    restorer = load_restorer(best_checkpoint(validation_setup.restorer))
    points = [(0.45, 1), (0.2, 0), (0.8, 3)]
    scores, occluded = score_operating_points(
        restorer, _ConstantRecogniser(len(split.label_space.expressions)), split, points
    )
    assert [s.f1_macro for s in scores] == [occluded] * 3  # the same decisions whatever is restored
    assert (restorer.mask_threshold, restorer.mask_dilation) == (0.45, 1)
    assert max(scores, key=lambda s: s.f1_macro) == scores[0]  # the rule calibrate_restorer uses: first maximum


def test_bad_grids_and_restorers_of_another_size_are_refused(validation_setup: SimpleNamespace, tmp_path: Path) -> None:
    setup = validation_setup
    with pytest.raises(ValueError, match=r"thresholds must lie in \(0, 1\)"):
        calibrate_restorer(setup.restorer, setup.recogniser, setup.split, tmp_path / "a", thresholds=(1.5,))
    with pytest.raises(ValueError, match="dilations must be >= 0"):
        calibrate_restorer(setup.restorer, setup.recogniser, setup.split, tmp_path / "b", dilations=(-1,))
    with pytest.raises(ValueError, match="at least one threshold"):
        calibrate_restorer(setup.restorer, setup.recogniser, setup.split, tmp_path / "c", thresholds=())
    small = restorer_run(tmp_path / "small", image_size=16)
    from multimodal_fer.errors import DataError

    with pytest.raises(DataError, match="trained on 16-pixel faces"):
        calibrate_restorer(small, setup.recogniser, setup.split, tmp_path / "d")


def test_given_several_checkpoints_the_best_pair_wins_and_its_weights_are_written(
    validation_setup: SimpleNamespace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import multimodal_fer.evaluation.restorer_calibration as calibration_module
    from multimodal_fer.models.restoration.restorer import RESTORER_CHECKPOINT_KEY

    real = calibration_module.score_operating_points

    def second_scores_higher(restorer: nn.Module, *args: object, **kwargs: object) -> tuple[list, float]:
        scores, occluded = real(restorer, *args, **kwargs)  # type: ignore[arg-type]
        if restorer.mask_threshold == 0.6:  # the second checkpoint (its trained threshold is put back after scoring)
            scores = [dataclasses.replace(p, f1_macro=p.f1_macro + 1.0) for p in scores]
        return scores, occluded

    monkeypatch.setattr(calibration_module, "score_operating_points", second_scores_higher)

    setup = validation_setup
    other = load_restorer(best_checkpoint(setup.restorer))
    other.generator.head.weight.data.zero_()  # fills every hole with one colour: other decisions, other scores
    other.mask_threshold = 0.6
    torch.save({RESTORER_CHECKPOINT_KEY: other.export()}, tmp_path / "other.ckpt")
    main(
        ["calibrate-restorer", f"--restorer={setup.restorer}", f"--restorer={tmp_path / 'other.ckpt'}"]
        + [f"--recogniser={setup.recogniser}", f"--split={setup.split}", f"--output={tmp_path / 'both'}"]
        + ["--thresholds", "0.3", "0.7", "--dilations", "0"]
    )
    record = json.loads((tmp_path / "both" / "calibration.json").read_text())
    offered = [best_checkpoint(setup.restorer).resolve(), (tmp_path / "other.ckpt").resolve()]
    assert [Path(c["restorer"]) for c in record["candidates"]] == offered
    assert [c["trained"]["threshold"] for c in record["candidates"]] == [0.45, 0.6]
    scores = [c["chosen"]["f1_macro"] for c in record["candidates"]]
    winner = 1
    assert scores[1] > 1.0 > scores[0]
    assert record["restorer"] == str(offered[winner]) and record["chosen"] == record["candidates"][winner]["chosen"]
    written = load_restorer(best_checkpoint(tmp_path / "both"))
    expected = load_restorer(offered[winner])
    for name, tensor in expected.state_dict().items():  # the chosen checkpoint's weights, at its chosen setting
        assert torch.equal(tensor, written.state_dict()[name]), name
    assert (written.mask_threshold, written.mask_dilation) == (
        record["chosen"]["threshold"],
        record["chosen"]["dilation"],
    )

    monkeypatch.setattr(calibration_module, "score_operating_points", real)
    shutil.copy(best_checkpoint(setup.restorer), tmp_path / "copy.ckpt")  # identical scores: the earlier one wins
    tie = calibrate_restorer([tmp_path / "copy.ckpt", setup.restorer], setup.recogniser, setup.split, tmp_path / "tie")
    assert tie.restorer == str((tmp_path / "copy.ckpt").resolve()) and len(tie.candidates) == 2
    with pytest.raises(ValueError, match="at least one restorer"):
        calibrate_restorer([], setup.recogniser, setup.split, tmp_path / "none")
