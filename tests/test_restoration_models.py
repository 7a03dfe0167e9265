"""Restoration networks, restorer export/load and its bad-input errors, losses and metrics."""

from pathlib import Path

import pytest
import torch

from multimodal_fer.datasets.synthaffect.labels import SYNTHAFFECT_LABEL_SPACE
from multimodal_fer.errors import DataError
from multimodal_fer.metrics import MaskedPSNR, RestorationMetrics
from multimodal_fer.models.encoders import FaceCNN
from multimodal_fer.models.restoration import (
    RESTORER_CHECKPOINT_KEY,
    ExpressionCritic,
    FaceRestorer,
    GatedConv2d,
    GatedUNetGenerator,
    OcclusionMaskNet,
    PatchDiscriminator,
    PretrainedRestorer,
    load_restorer,
)
from multimodal_fer.models.restoration.losses import (
    expression_consistency_loss,
    feature_loss,
    hinge_discriminator_loss,
    hinge_generator_loss,
    mask_loss,
    masked_l1,
)


def tiny_restorer() -> FaceRestorer:
    return FaceRestorer(OcclusionMaskNet(widths=(4, 8)), GatedUNetGenerator(widths=(4, 8, 8), dilations=(2,)))


def save_restorer(restorer: FaceRestorer, path: Path, image_size: int) -> Path:
    restorer.image_size.fill_(image_size)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({RESTORER_CHECKPOINT_KEY: restorer.export(), "state_dict": {}}, path)
    return path


def test_gated_conv_shapes_and_gate_range() -> None:
    layer = GatedConv2d(3, 5, stride=2)
    assert layer(torch.randn(2, 3, 16, 16)).shape == (2, 5, 8, 8)
    with pytest.raises(ValueError, match="odd"):
        GatedConv2d(3, 5, kernel_size=4)


@pytest.mark.parametrize("extra_convs", [0, 1])
def test_generator_mask_net_discriminator_critic_shapes_and_backward(extra_convs: int) -> None:
    faces = torch.randn(2, 3, 32, 32, requires_grad=True)
    mask = (torch.rand(2, 1, 32, 32) > 0.7).float()
    generator = GatedUNetGenerator(widths=(4, 8, 16), dilations=(2,), extra_convs=extra_convs, stem_kernel=3)
    generated = generator(faces, mask)
    assert generated.shape == faces.shape
    assert OcclusionMaskNet(widths=(4, 8))(faces).shape == (2, 1, 32, 32)
    scores = PatchDiscriminator(widths=(8, 16))(faces, mask)
    assert scores.shape == (2, 1, 8, 8)
    maps, outputs = ExpressionCritic(SYNTHAFFECT_LABEL_SPACE, widths=(4, 8))(faces)
    assert [m.shape[1] for m in maps] == [4, 8]
    assert outputs["expr"].shape == (2, 8) and outputs["au"].shape == (2, 16)
    (generated.mean() + scores.mean() + outputs["expr"].mean()).backward()
    assert faces.grad is not None and torch.isfinite(faces.grad).all()


def test_generator_ignores_pixels_under_the_mask() -> None:
    generator = GatedUNetGenerator(widths=(4, 8), dilations=(2,))
    faces = torch.randn(1, 3, 16, 16)
    mask = torch.zeros(1, 1, 16, 16)
    mask[..., 4:10, 4:10] = 1
    other = faces.clone()
    other[..., 4:10, 4:10] = 100.0
    torch.testing.assert_close(generator(faces, mask), generator(other, mask))


def test_generator_refuses_sizes_it_cannot_pool() -> None:
    with pytest.raises(ValueError, match="divisible by 4"):
        GatedUNetGenerator(widths=(4, 8, 8))(torch.randn(1, 3, 30, 30), torch.zeros(1, 1, 30, 30))


def test_unoccluded_face_passes_through_unchanged() -> None:
    restorer = tiny_restorer().eval()
    faces = torch.randn(2, 3, 16, 16)
    out = restorer(faces, torch.zeros(2, 1, 16, 16))
    assert torch.equal(out["restored"], faces)


def test_blind_restoration_keeps_every_pixel_outside_the_predicted_mask() -> None:
    torch.manual_seed(0)
    restorer = tiny_restorer().eval()
    faces = torch.randn(3, 3, 16, 16)
    with torch.no_grad():  # an untrained mask net: centre its logits so that it marks some pixels, not all
        logits = restorer.mask_net(faces)
        restorer.mask_net.head.bias -= logits.median()
    out = restorer(faces)
    visible = out["mask"].expand_as(faces) == 0
    assert visible.any() and (~visible).any()
    assert torch.equal(out["restored"][visible], faces[visible])
    assert set(out["mask"].unique().tolist()) <= {0.0, 1.0}


@pytest.mark.parametrize(
    ("mask", "message"),
    [
        (torch.zeros(2, 1, 8, 8), "shape"),
        (torch.full((2, 1, 16, 16), 255.0), "divided by 255"),
        (torch.full((2, 1, 16, 16), float("nan")), "NaN"),
    ],
)
def test_bad_masks_are_refused_clearly(mask: torch.Tensor, message: str) -> None:
    with pytest.raises(DataError, match=message):
        tiny_restorer()(torch.randn(2, 3, 16, 16), mask)


def test_bool_and_three_dimensional_masks_are_accepted() -> None:
    faces = torch.randn(2, 3, 16, 16)
    out = tiny_restorer()(faces, torch.zeros(2, 16, 16, dtype=torch.bool))
    assert torch.equal(out["restored"], faces)


def test_export_and_load_round_trip(tmp_path: Path) -> None:
    restorer = tiny_restorer().eval()
    path = save_restorer(restorer, tmp_path / "restorer.ckpt", image_size=16)
    loaded = load_restorer(path)
    faces = torch.randn(2, 3, 16, 16)
    torch.testing.assert_close(loaded(faces)["restored"], restorer(faces)["restored"])
    assert int(loaded.image_size) == 16


def test_restorer_from_another_image_size_is_refused(tmp_path: Path) -> None:
    loaded = load_restorer(save_restorer(tiny_restorer(), tmp_path / "r.ckpt", image_size=16))
    with pytest.raises(DataError, match=r"trained on 16×16 faces but receives 32×32"):
        loaded(torch.randn(1, 3, 32, 32))


def test_checkpoint_without_restorer_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "fer.ckpt"
    torch.save({"state_dict": {}}, path)
    with pytest.raises(DataError, match="not a restoration checkpoint"):
        load_restorer(path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_restorer(tmp_path / "missing.ckpt")


def test_restorer_of_another_architecture_is_refused(tmp_path: Path) -> None:
    exported = tiny_restorer().export()
    exported["architecture"]["generator"]["widths"] = [4, 8, 16]  # weights no longer fit
    torch.save({RESTORER_CHECKPOINT_KEY: exported}, tmp_path / "edited.ckpt")
    with pytest.raises(DataError, match="do not fit the architecture"):
        load_restorer(tmp_path / "edited.ckpt")
    exported = tiny_restorer().export()
    exported["architecture"]["generator"]["class"] = "LamaGenerator"
    torch.save({RESTORER_CHECKPOINT_KEY: exported}, tmp_path / "other.ckpt")
    with pytest.raises(DataError, match="LamaGenerator"):
        load_restorer(tmp_path / "other.ckpt")
    exported = tiny_restorer().export()
    exported["format_version"] = 99
    torch.save({RESTORER_CHECKPOINT_KEY: exported}, tmp_path / "future.ckpt")
    with pytest.raises(DataError, match="format version 99"):
        load_restorer(tmp_path / "future.ckpt")


def test_frozen_restorer_in_face_encoder_stays_in_eval_and_gets_no_gradient(tmp_path: Path) -> None:
    path = save_restorer(tiny_restorer(), tmp_path / "r.ckpt", image_size=32)
    encoder = FaceCNN(out_dim=8, widths=(4, 8), restorer=PretrainedRestorer(str(path)))
    encoder.train()
    assert not encoder.restorer.restorer.training
    encoder(torch.randn(2, 3, 32, 32)).sum().backward()
    assert all(p.grad is None and not p.requires_grad for p in encoder.restorer.parameters())
    assert all(p.grad is not None for p in encoder.features.parameters())

    tuned = FaceCNN(out_dim=8, widths=(4, 8), restorer=PretrainedRestorer(str(path), finetune=True))
    tuned.train()
    assert tuned.restorer.restorer.training
    tuned(torch.randn(2, 3, 32, 32)).sum().backward()
    assert any(p.grad is not None for p in tuned.restorer.restorer.generator.parameters())


def test_restoration_losses() -> None:
    target = torch.zeros(1, 3, 4, 4)
    prediction = target.clone()
    mask = torch.zeros(1, 1, 4, 4)
    mask[..., :2, :] = 1
    prediction[..., :2, :] = 2.0
    hole, valid = masked_l1(prediction, target, mask)
    assert hole.item() == pytest.approx(2.0) and valid.item() == 0.0
    assert hinge_discriminator_loss(torch.full((2,), 3.0), torch.full((2,), -3.0)).item() == 0.0
    assert hinge_discriminator_loss(torch.zeros(2), torch.zeros(2)).item() == 2.0
    assert hinge_generator_loss(torch.full((2,), 0.5)).item() == -0.5
    perfect = mask_loss(torch.where(mask > 0, 20.0, -20.0), mask)
    wrong = mask_loss(torch.where(mask > 0, -20.0, 20.0), mask)
    assert perfect.item() < 0.01 < wrong.item()
    maps = [torch.randn(2, 4, 8, 8)]
    assert feature_loss(maps, maps).item() == 0.0
    outputs = {"expr": torch.randn(2, 8), "au": torch.randn(2, 16)}
    same = expression_consistency_loss(outputs, outputs)
    other = expression_consistency_loss({k: -v for k, v in outputs.items()}, outputs)
    assert other.item() > same.item()


def test_masked_psnr_matches_a_hand_computation() -> None:
    clean = torch.zeros(2, 3, 4, 4)
    restored = clean.clone()
    restored[0, :, :2] = 0.1  # error 0.1 on the masked half of image 0
    mask = torch.zeros(2, 1, 4, 4)
    mask[0, :, :2] = 1  # image 1 has no masked pixel: skipped
    metric = MaskedPSNR()
    metric.update(restored, clean, mask)
    assert metric.compute().item() == pytest.approx(20.0, abs=1e-4)  # 10 log10(1 / 0.01)


def test_restoration_metrics_report_gain_and_skip_unoccluded_faces() -> None:
    clean = torch.rand(2, 3, 16, 16)
    mask = torch.zeros(2, 1, 16, 16)
    mask[0, :, 4:12, 4:12] = 1
    occluded = torch.where(mask > 0, torch.zeros_like(clean), clean)
    restored = torch.where(mask > 0, clean + 0.01, clean)
    metrics = RestorationMetrics("val")
    metrics.update(restored, occluded, clean, mask, mask)
    values = metrics.compute()
    assert values["val/mask/iou"].item() == 1.0
    assert values["val/restoration/psnr_occluded_gain"].item() > 20
    assert values["val/restoration/ssim_face"] > values["val/restoration/ssim_face_input"]
    empty = RestorationMetrics("val")
    empty.update(clean, clean, clean, torch.zeros_like(mask), torch.zeros_like(mask))
    assert set(empty.compute()) == {"val/mask/iou"}
