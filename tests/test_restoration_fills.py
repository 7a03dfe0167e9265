"""Trivial fills behind the restorer's mask network, and the mask-aware face encoder."""

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from multimodal_fer.cli import build_cli, main
from multimodal_fer.datasets.synthaffect.labels import SYNTHAFFECT_LABEL_SPACE
from multimodal_fer.errors import DataError
from multimodal_fer.models.encoders.face import FaceCNN
from multimodal_fer.models.restoration import (
    RESTORER_CHECKPOINT_KEY,
    TRIVIAL_FILLS,
    FaceRestorer,
    GatedUNetGenerator,
    OcclusionMaskNet,
    PretrainedRestorer,
    load_restorer,
)
from multimodal_fer.models.restoration.fills import mean_colour_fill, mirror_fill, opencv_inpaint_fill
from multimodal_fer.preprocessing.cache import CacheReader
from multimodal_fer.preprocessing.occlusion_split_cache import build_occlusion_split
from multimodal_fer.standardization import restandardize
from multimodal_fer.tasks import MultitaskFERTask
from multimodal_fer.tasks.encoder_initialisation import load_pretrained_encoder

from conftest import CONFIGS, REPO, run_folder, tiny_data_args, tiny_trainer_args

QUICKSTART = str(CONFIGS / "quickstart.yaml")
FACE_RESTORER = str(CONFIGS / "overlays" / "face_restorer.yaml")
FACE_MASK_AWARE = str(CONFIGS / "overlays" / "face_mask_aware.yaml")
#: Where both overlays look for stage 1's restorer, relative to the working folder.
RESTORER_CKPT = Path("runs/restoration/latest/checkpoints/restorer.ckpt")
FILL_KEY = "--model.init_args.encoders.face.init_args.restorer.init_args.fill"


class FixedLogits(nn.Module):
    """A stand-in mask network that returns given logits whatever the face."""

    def __init__(self, logits: Tensor) -> None:
        super().__init__()
        self.register_buffer("logits", logits)

    def forward(self, image: Tensor) -> Tensor:
        """Faces (B, 3, H, W) → the fixed logits (B, 1, H, W)."""
        return self.logits.expand(image.shape[0], -1, -1, -1)[: image.shape[0]]


def tiny_restorer(**options: object) -> FaceRestorer:
    """A restorer with tiny networks, no dilation (so given and predicted masks are used as they are)."""
    torch.manual_seed(0)
    generator = GatedUNetGenerator(widths=(4, 8, 8), dilations=(2,), extra_convs=0, stem_kernel=3)
    restorer = FaceRestorer(OcclusionMaskNet(widths=(4, 8)), generator, mask_dilation=0, **options)  # type: ignore[arg-type]
    return restorer.eval()


def save_tiny_restorer(path: Path, size: int = 32) -> Path:
    """Write a tiny untrained restorer for ``size``-pixel faces where the stage-2 overlays look for one."""
    restorer = tiny_restorer()
    restorer.image_size.fill_(size)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({RESTORER_CHECKPOINT_KEY: restorer.export()}, path)
    return path


def test_mean_colour_is_the_mean_of_the_visible_pixels_per_channel() -> None:
    image = torch.zeros(1, 3, 2, 2)
    image[0, 0] = torch.tensor([[1.0, 2.0], [3.0, 100.0]])
    image[0, 1] = torch.tensor([[-1.0, -2.0], [-6.0, 50.0]])
    image[0, 2] = 7.0
    mask = torch.tensor([[[[0.0, 0.0], [0.0, 1.0]]]])
    out = tiny_restorer(fill="mean_colour")(image, mask)
    expected = image.clone()
    expected[0, :, 1, 1] = torch.tensor([2.0, -3.0, 7.0])
    assert torch.equal(out["restored"], expected)
    assert torch.equal(mean_colour_fill(image, mask)[0, :, 0, 0], torch.tensor([2.0, -3.0, 7.0]))


def test_mirror_takes_the_visible_mirror_pixel_and_the_mean_colour_where_both_are_occluded() -> None:
    image = torch.arange(3 * 2 * 4, dtype=torch.float32).reshape(1, 3, 2, 4)
    mask = torch.zeros(1, 1, 2, 4)
    mask[0, 0, 0, 1] = 1.0  # its mirror (0, 2) is visible
    mask[0, 0, 1, 0] = mask[0, 0, 1, 3] = 1.0  # a mirrored pair, both occluded
    out = tiny_restorer(fill="mirror")(image, mask)["restored"]
    visible = mask[0, 0] == 0
    expected = image.clone()
    expected[0, :, 0, 1] = image[0, :, 0, 2]
    for channel in range(3):
        mean = image[0, channel][visible].mean()
        expected[0, channel, 1, 0] = expected[0, channel, 1, 3] = mean
    assert torch.equal(out, expected)
    assert torch.equal(mirror_fill(image, mask)[0, :, 0, 1], image[0, :, 0, 2])


@pytest.mark.parametrize("method", ["telea", "navier_stokes"])
def test_opencv_inpainting_fills_only_masked_pixels(method: str) -> None:
    torch.manual_seed(1)
    image = torch.randn(2, 3, 16, 16)
    image[:, :, :, :8] = 0.75  # a flat left half: a hole inside it is filled with (about) its colour
    mask = torch.zeros(2, 1, 16, 16)
    mask[0, :, 5:9, 2:5] = 1.0
    image[0, :, 5:9, 2:5] = 3.0  # the occluder
    mask[1, :, 10:14, 9:14] = 1.0  # a hole in the noisy half
    out = tiny_restorer(fill=method, inpaint_radius=2)(image, mask)["restored"]
    keep = mask.expand_as(image) == 0
    assert torch.equal(out[keep], image[keep]), "visible pixels are returned bit for bit"
    step = float(image[0].max() - image[0].min()) / 255  # one level of the 8-bit face OpenCV inpaints
    flat_hole = out[0, :, 5:9, 2:5]  # OpenCV's fills wander by a level or two even inside a flat area
    assert float((flat_hole - 0.75).abs().max()) <= 3 * step and not torch.equal(flat_hole, image[0, :, 5:9, 2:5])
    hole = out[1, :, 10:14, 9:14]
    assert not torch.equal(hole, image[1, :, 10:14, 9:14])
    assert image[1].min() <= hole.min() and hole.max() <= image[1].max()
    with pytest.raises(ValueError, match="colour faces"):
        opencv_inpaint_fill(image[:, :1], mask, method)  # type: ignore[arg-type]


@pytest.mark.parametrize("fill", TRIVIAL_FILLS)
def test_trivial_fills_respect_min_occluded_fraction(fill: str) -> None:
    logits = torch.full((2, 1, 8, 8), -10.0)
    logits[0, :, 0, 0] = 10.0  # 1 of 64 pixels: below 10 %, judged unoccluded
    logits[1, :, 2:6, 1:5] = 10.0  # 16 of 64 pixels
    restorer = tiny_restorer(fill=fill, min_occluded_fraction=0.1)
    restorer.mask_net = FixedLogits(logits)  # type: ignore[assignment]
    torch.manual_seed(2)
    image = torch.randn(2, 3, 8, 8)
    out = restorer(image)
    assert out["applied"].tolist() == [False, True]
    assert torch.equal(out["restored"][0], image[0]) and not out["mask"][0].any()
    occluded = out["mask"][1].expand(3, -1, -1) > 0
    assert int(occluded.sum()) == 3 * 16
    assert torch.equal(out["restored"][1][~occluded], image[1][~occluded])
    assert not torch.equal(out["restored"][1][occluded], image[1][occluded])


def test_fill_none_returns_the_face_with_the_predicted_mask_and_bad_options_are_refused(tmp_path: Path) -> None:
    logits = torch.full((1, 1, 8, 8), -10.0)
    logits[..., :4, :] = 10.0
    restorer = tiny_restorer(fill="none")
    restorer.mask_net = FixedLogits(logits)  # type: ignore[assignment]
    image = torch.randn(3, 3, 8, 8)
    out = restorer(image)
    assert torch.equal(out["restored"], image) and float(out["mask"].mean()) == 0.5
    with pytest.raises(ValueError, match="fill must be one of"):
        tiny_restorer(fill="blur")
    with pytest.raises(ValueError, match="inpaint_radius"):
        tiny_restorer(fill="telea", inpaint_radius=0)
    checkpoint = save_tiny_restorer(tmp_path / "restorer.ckpt")
    with pytest.raises(ValueError, match="no weights to fine-tune"):
        PretrainedRestorer(str(checkpoint), finetune=True, fill="mirror")
    frozen = PretrainedRestorer(str(checkpoint), fill="telea", inpaint_radius=5)
    assert frozen.restorer.fill == "telea" and frozen.restorer.inpaint_radius == 5


def test_mask_aware_encoder_starts_as_the_plain_cnn_and_then_uses_the_mask(tmp_path: Path) -> None:
    checkpoint = str(save_tiny_restorer(tmp_path / "restorer.ckpt"))
    logits = torch.full((1, 1, 32, 32), -10.0)
    logits[..., 8:20, 4:28] = 10.0
    encoders = {}
    for mask_input in ("none", "channel"):
        restorer = PretrainedRestorer(checkpoint, fill="none")
        restorer.restorer.mask_net = FixedLogits(logits)  # type: ignore[assignment]
        torch.manual_seed(3)
        encoders[mask_input] = FaceCNN(out_dim=8, widths=(4, 8), restorer=restorer, mask_input=mask_input).eval()  # type: ignore[arg-type]
    aware = encoders["channel"]
    assert aware.features[0].in_channels == 4 and not aware.features[0].weight[:, 3].any()
    face = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(aware(face), encoders["none"](face), atol=1e-6, rtol=1e-5)

    aware.train()
    aware(face).square().sum().backward()
    mask_weight = aware.features[0].weight
    assert mask_weight.grad is not None and mask_weight.grad[:, 3].abs().sum() > 0, "the mask channel learns"
    with torch.no_grad():
        mask_weight[:, 3] += 0.5
    aware.eval()
    assert not torch.allclose(aware(face), encoders["none"](face)), "once trained, the mask changes the output"

    with pytest.raises(ValueError, match="no restorer is given"):
        FaceCNN(mask_input="channel")
    with pytest.raises(ValueError, match="mask_input must be"):
        FaceCNN(mask_input="attention")  # type: ignore[arg-type]


def test_a_mask_aware_encoder_starts_from_a_clean_face_recognisers_weights(tmp_path: Path) -> None:
    checkpoint = str(save_tiny_restorer(tmp_path / "restorer.ckpt"))
    logits = torch.full((1, 1, 32, 32), -10.0)
    logits[..., 8:20, 4:28] = 10.0
    torch.manual_seed(1)
    plain = FaceCNN(out_dim=8, widths=(4, 8)).eval()
    torch.save(plain.state_dict(), tmp_path / "plain.pt")
    restorer = PretrainedRestorer(checkpoint, fill="none")
    restorer.restorer.mask_net = FixedLogits(logits)  # type: ignore[assignment]
    torch.manual_seed(2)
    aware = FaceCNN(out_dim=8, widths=(4, 8), restorer=restorer, mask_input="channel")  # type: ignore[arg-type]
    restorer_before = {key: value.clone() for key, value in aware.restorer.state_dict().items()}
    model = MultitaskFERTask({"face": aware}, SYNTHAFFECT_LABEL_SPACE, head_dropout=0.0).model
    assert load_pretrained_encoder(model, "face", tmp_path / "plain.pt") is False  # a bare state dict: no norm
    aware.eval()
    face = torch.randn(2, 3, 32, 32)
    # The mask channel starts at zero: the plain CNN exactly (on the face standardised again, as the encoder does
    # behind its restorer).
    torch.testing.assert_close(aware(face), plain(restandardize(face)), atol=1e-6, rtol=1e-5)
    assert not aware.features[0].weight[:, 3].any()
    for key, value in aware.restorer.state_dict().items():  # the restorer keeps its own checkpoint's weights
        assert torch.equal(value, restorer_before[key]), key
    torch.save(aware.state_dict(), tmp_path / "aware.pt")  # the other way round is another configuration
    with pytest.raises(DataError, match="unexpected: restorer"):
        load_pretrained_encoder(
            MultitaskFERTask({"face": plain}, SYNTHAFFECT_LABEL_SPACE).model, "face", tmp_path / "aware.pt"
        )


def test_stage_two_fits_and_tests_with_a_trivial_fill(tmp_path: Path, tiny_cache: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    save_tiny_restorer(tmp_path / RESTORER_CKPT)
    base = ["--config", QUICKSTART, "--config", FACE_RESTORER, *tiny_data_args(tiny_cache)]
    main(["fit", *base, *tiny_trainer_args(tmp_path / "fit"), f"{FILL_KEY}=mirror", "--trainer.fast_dev_run=true"])
    main(["test", *base, *tiny_trainer_args(tmp_path / "test"), f"{FILL_KEY}=telea", "--trainer.limit_test_batches=1"])
    results = json.loads((run_folder(tmp_path / "test") / "results-test.json").read_text())
    restorer = results["config"]["model"]["init_args"]["encoders"]["face"]["init_args"]["restorer"]["init_args"]
    assert restorer["fill"] == "telea" and restorer["inpaint_radius"] == 3
    assert "test/expr/f1_macro" in results["metrics"]


def test_mask_aware_overlay_builds_and_fits(tmp_path: Path, tiny_cache: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    save_tiny_restorer(tmp_path / RESTORER_CKPT)
    args = [
        "--config",
        QUICKSTART,
        "--config",
        FACE_MASK_AWARE,
        *tiny_data_args(tiny_cache),
        *tiny_trainer_args(tmp_path),
    ]
    face = build_cli(args, run=False).model.model.encoders["face"]
    assert face.mask_input == "channel" and face.features[0].in_channels == 4
    assert face.restorer.restorer.fill == "none" and not face.restorer.finetune
    main(["fit", *args, "--trainer.fast_dev_run=true"])


class FaceStatisticsRecogniser(nn.Module):
    """A stand-in recogniser whose outputs are a fixed function of the face it is given."""

    label_space = SYNTHAFFECT_LABEL_SPACE

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(4)
        self.expr = nn.Linear(12, SYNTHAFFECT_LABEL_SPACE.num_expressions)
        self.au = nn.Linear(12, SYNTHAFFECT_LABEL_SPACE.num_action_units)

    def forward(self, inputs: dict[str, Tensor], present: dict[str, Tensor]) -> SimpleNamespace:
        """Faces (B, 3, H, W) → heads ``expr`` (B, classes) and ``au`` (B, AUs) from quadrant means."""
        quadrants = F.adaptive_avg_pool2d(inputs["face"], 2).flatten(1)
        return SimpleNamespace(heads={"expr": self.expr(quadrants), "au": self.au(quadrants)})


def test_the_occlusion_benchmark_evaluates_every_fill_behind_the_same_masks(tmp_path: Path, tiny_cache: Path) -> None:
    from multimodal_fer.evaluation.occlusion_evaluation import evaluate_seed
    from multimodal_fer.evaluation.occlusion_inputs import open_occlusion_split
    from multimodal_fer.evaluation.occlusion_spec import parse_spec

    split_root = tmp_path / "split"
    build_occlusion_split(CacheReader(tiny_cache), np.arange(2), split_root)  # 2 faces × every occlusion kind
    restorer = load_restorer(save_tiny_restorer(tmp_path / "restorer.ckpt"))
    spec = parse_spec(
        {
            "split": str(split_root),
            "fills": ["mean_colour", "telea", "mirror"],
            "recognisers": [
                {"label": "R"},
                {"label": "R+mask", "conditions": ["clean", "occluded"], "restores": True, "reference": "R"},
            ],
            "seeds": [{"seed": 0, "runs": {"R": "unused", "R+mask": "unused"}, "restorer": "unused"}],
        }
    )
    models = {"R": FaceStatisticsRecogniser().eval(), "R+mask": FaceStatisticsRecogniser().eval()}
    evaluation = evaluate_seed(spec, 0, open_occlusion_split(split_root), models, restorer)
    for fill in ("mean_colour", "telea", "mirror"):
        for masks in ("", "_true_mask"):
            assert evaluation.predictions[f"R restored_{fill}{masks}"].outputs["expr"].shape == (14, 8)
    assert "R restored_navier_stokes" not in evaluation.predictions  # not asked for
    assert "R+mask occluded" in evaluation.predictions and "R+mask restored_telea" not in evaluation.predictions
    faces = {fill: evaluation.predictions[f"R restored_{fill}"].outputs["expr"] for fill in ("mean_colour", "telea")}
    assert not np.allclose(faces["mean_colour"], faces["telea"])  # each fill gives the recogniser other faces
    quality = evaluation.restoration["all"]
    psnr = {fill: quality[f"fill/{fill}/restoration/psnr_occluded"] for fill in ("mean_colour", "telea", "mirror")}
    assert all(np.isfinite(v) for v in psnr.values()) and len(set(psnr.values())) == 3
    assert quality["restoration/psnr_occluded"] not in psnr.values()  # the generator's, under the plain name


def test_the_trivial_fills_benchmark_measures_every_fill_with_the_true_masks(tiny_cache: Path) -> None:
    sys.path.insert(0, str(REPO / "benchmarks"))
    import trivial_fills

    occluded = int((np.asarray(CacheReader(tiny_cache).array("occlusion_type")) >= 0).sum())
    assert occluded >= 2, "the tiny cache has occluded faces to fill"
    result = trivial_fills.measure(tiny_cache, list(TRIVIAL_FILLS), limit=2)
    assert set(result) == set(TRIVIAL_FILLS)
    for fill, groups in result.items():
        overall = groups["all"]
        assert overall["faces"] == 2 and overall["ms_per_face"] > 0
        assert np.isfinite(overall["psnr_occluded"]), fill
        assert overall["psnr_occluded"] != overall["psnr_occluded_input"], fill
    table = trivial_fills.markdown(result)
    assert "| all | 2 |" in table and "| ms per face (CPU) |" in table
