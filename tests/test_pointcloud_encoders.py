from functools import partial
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
import yaml
from torch import nn

from multimodal_fer.datamodules import SynthAffectDataModule
from multimodal_fer.datamodules.device_transforms import augment_face_and_depth, augment_points, normalize_points
from multimodal_fer.datasets.synthaffect.labels import SYNTHAFFECT_LABEL_SPACE
from multimodal_fer.errors import CorruptCacheError, DataError
from multimodal_fer.models.encoders import DGCNNEncoder, Encoder, FaceCNN, PhysioCNN, PointNetEncoder
from multimodal_fer.models.encoders.pointcloud import EdgeConv, knn_indices, orthogonality_penalty
from multimodal_fer.models.fusion import AttentionFusion, MulTFusion
from multimodal_fer.models.multimodal import MultimodalFERModel
from multimodal_fer.types import PRESENT_KEY

from conftest import CONFIGS, TINY_DATA

PRESETS = [CONFIGS / "encoders" / "depth_pointnet.yaml", CONFIGS / "encoders" / "depth_dgcnn.yaml"]


def _cloud(batch: int, num_points: int, seed: int = 0) -> torch.Tensor:
    """Random clouds (B, N, 6): xyz in the unit ball, unit normals."""
    generator = torch.Generator().manual_seed(seed)
    xyz = torch.randn(batch, num_points, 3, generator=generator) * 0.4
    normals = F.normalize(torch.randn(batch, num_points, 3, generator=generator), dim=-1)
    return torch.cat([xyz, normals], dim=-1)


def _pointnet(**overrides) -> PointNetEncoder:
    return PointNetEncoder(**{"out_dim": 12, "widths": (8, 16), **overrides})


def _dgcnn(**overrides) -> DGCNNEncoder:
    return DGCNNEncoder(**{"out_dim": 12, "widths": (8, 16), "k": 5, "embed_dim": 24, **overrides})


ENCODERS = {"pointnet": _pointnet, "pointnet_max_mean": partial(_pointnet, pooling="max_mean"), "dgcnn": _dgcnn}


# ------------------------------------------------------------------------------------------------- encoders
@pytest.mark.parametrize("name", ENCODERS)
def test_forward_backward_reaches_every_parameter(name: str) -> None:
    torch.manual_seed(0)
    encoder = ENCODERS[name]()
    assert encoder.modality == "depth" and encoder.out_dim == encoder.token_dim == 12
    x = _cloud(2, 64).requires_grad_(True)
    y = encoder(x)
    assert y.shape == (2, 12) and torch.isfinite(y).all()
    y.square().mean().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    for param_name, param in encoder.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), param_name


@pytest.mark.parametrize("name", ENCODERS)
def test_permutation_invariance(name: str) -> None:
    torch.manual_seed(0)
    encoder = ENCODERS[name](num_tokens=16)
    x = _cloud(3, 80)
    order = torch.stack([torch.randperm(80) for _ in range(3)])
    shuffled = x.gather(1, order.unsqueeze(-1).expand(-1, -1, 6))
    encoder.train()  # batch statistics are symmetric too
    assert torch.allclose(encoder(x), encoder(shuffled), atol=1e-5)
    encoder.eval()
    assert torch.allclose(encoder(x), encoder(shuffled), atol=1e-5)
    assert torch.allclose(encoder.forward_tokens(x), encoder.forward_tokens(shuffled), atol=1e-5)
    assert not torch.allclose(encoder(x), encoder(_cloud(3, 80, seed=1)), atol=1e-3)


@pytest.mark.parametrize("name", ENCODERS)
@pytest.mark.parametrize("num_points", [1, 3, 37, 200])
def test_any_number_of_points(name: str, num_points: int) -> None:
    torch.manual_seed(0)
    encoder = ENCODERS[name](num_tokens=8)
    x = _cloud(2, num_points)
    if num_points > 1:  # training batch norm needs more than one value per channel
        encoder.train()
        assert encoder(x).shape == (2, 12)
    encoder.eval()
    assert torch.isfinite(encoder(x)).all() and encoder(x).shape == (2, 12)
    assert encoder.forward_tokens(x).shape == (2, min(8, num_points), 12)


@pytest.mark.parametrize("name", ENCODERS)
def test_token_shapes_and_mean(name: str) -> None:
    torch.manual_seed(0)
    x = _cloud(2, 50)
    assert ENCODERS[name](num_tokens=16).forward_tokens(x).shape == (2, 16, 12)
    every = ENCODERS[name](num_tokens=None).eval()
    tokens = every.forward_tokens(x)
    assert tokens.shape == (2, 50, 12)
    if every.head.pooling == "max_mean":  # tokens fc([max, f_i]) average to the vector fc([max, mean])
        assert torch.allclose(tokens.mean(dim=1), every(x), atol=1e-5)
    with pytest.raises(ValueError, match="num_tokens"):
        ENCODERS[name](num_tokens=0)


@pytest.mark.parametrize("name", ENCODERS)
def test_bfloat16_autocast(name: str) -> None:
    torch.manual_seed(0)
    encoder = ENCODERS[name](num_tokens=8)
    x = _cloud(2, 40)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # neighbour search and edge statistics stay float32
        y = encoder(x)
        tokens = encoder.forward_tokens(x)
    assert torch.isfinite(y.float()).all() and tokens.shape == (2, 8, 12)
    y.float().square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in encoder.parameters())


@pytest.mark.parametrize("name", ENCODERS)
def test_depth_maps_are_refused_with_the_fix(name: str) -> None:
    with pytest.raises(ValueError, match="depth_input: points"):
        ENCODERS[name]()(torch.randn(2, 2, 16, 16))
    with pytest.raises(ValueError, match=r"\(B, N, 6\)"):
        ENCODERS[name]()(torch.randn(2, 10, 3))


def test_input_transform_regulariser() -> None:
    torch.manual_seed(0)
    assert _pointnet(input_transform=False).transform is None
    plain = _pointnet(input_transform=False)
    plain(_cloud(2, 16))
    assert plain.transform_regularizer is None
    encoder = _pointnet()
    assert encoder.transform_regularizer is None
    encoder(_cloud(2, 32))
    assert encoder.transform_regularizer is not None
    assert encoder.transform_regularizer.item() == pytest.approx(0.0, abs=1e-10)  # starts at the identity
    with torch.no_grad():
        encoder.transform.head[-1].bias.normal_(0.0, 0.5)
    encoder(_cloud(2, 32))
    penalty = encoder.transform_regularizer
    assert penalty.ndim == 0 and penalty.item() > 1e-3
    penalty.backward()
    assert encoder.transform.head[-1].bias.grad.abs().sum() > 0
    rotation = torch.linalg.qr(torch.randn(4, 3, 3)).Q
    assert orthogonality_penalty(rotation).item() == pytest.approx(0.0, abs=1e-10)


def test_input_transform_is_applied_to_xyz_and_normals() -> None:
    torch.manual_seed(0)
    encoder = _pointnet().eval()
    x = _cloud(2, 40)
    rotation = torch.linalg.qr(torch.randn(3, 3)).Q
    with torch.no_grad():  # the T-Net now outputs the fixed rotation R: the MLP sees [p R, n R]
        encoder.transform.head[-1].bias.copy_((rotation - torch.eye(3)).reshape(-1))
        rotated = torch.cat([x[..., :3] @ rotation, x[..., 3:] @ rotation], dim=-1)
        expected = encoder.head.vector(encoder.points(rotated.transpose(1, 2)).transpose(1, 2))
    assert torch.allclose(encoder(x), expected, atol=1e-5)
    assert encoder.transform_regularizer.item() == pytest.approx(0.0, abs=1e-8)


# -------------------------------------------------------------------------------------------- graph layers
def test_knn_matches_brute_force_in_any_block_size() -> None:
    torch.manual_seed(0)
    features = torch.randn(2, 30, 4)
    reference = torch.cdist(features, features).topk(6, largest=False).indices.sort(dim=-1).values
    for block in (1, 17, 2**24):
        found = knn_indices(features, 6, block_elements=block).sort(dim=-1).values
        assert torch.equal(found, reference)
    assert (knn_indices(features, 6)[..., 0] == torch.arange(30)).all()  # itself first
    assert knn_indices(features, 50).shape == (2, 30, 30)  # k clipped to N


def _reference_edge_conv(layer: EdgeConv, x: torch.Tensor, neighbours: torch.Tensor, train: bool) -> tuple:
    """The textbook EdgeConv: build every edge [x_i, x_j - x_i], Conv2d 1x1, BatchNorm2d, LeakyReLU, max."""
    channels = x.shape[-1]
    conv = nn.Conv2d(2 * channels, layer.weight.numel(), 1, bias=False)
    norm = nn.BatchNorm2d(layer.weight.numel()).train(train)
    with torch.no_grad():
        conv.weight.copy_(
            torch.cat([layer.centre.weight + layer.neighbour.weight, layer.neighbour.weight], 1)[..., None, None]
        )
        norm.weight.copy_(layer.weight)
        norm.bias.copy_(layer.bias)
        norm.running_mean.copy_(layer.running_mean)
        norm.running_var.copy_(layer.running_var)
    centre = x.unsqueeze(2).expand(-1, -1, neighbours.shape[-1], -1)  # (B, N, k, C)
    batch = torch.arange(x.shape[0]).view(-1, 1, 1)
    edges = torch.cat([centre, x[batch, neighbours] - centre], dim=-1).permute(0, 3, 1, 2)  # (B, 2C, N, k)
    out = F.leaky_relu(norm(conv(edges)), layer.negative_slope).amax(dim=-1).transpose(1, 2)
    return out, conv, norm


@pytest.mark.parametrize("train", [True, False])
def test_edge_conv_equals_the_textbook_computation(train: bool) -> None:
    torch.manual_seed(0)
    layer = EdgeConv(5, 6).train(train)
    with torch.no_grad():  # negative weights exercise the "smallest neighbour" branch
        layer.weight.copy_(torch.randn(6))
        layer.bias.copy_(torch.randn(6))
        layer.running_mean.normal_()
        layer.running_var.uniform_(0.5, 2.0)
    x = torch.randn(3, 40, 5, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_(True)
    neighbours = knn_indices(x, 7)
    expected, conv, norm = _reference_edge_conv(layer, x_ref, neighbours, train)  # copies the running stats
    out = layer(x, neighbours)
    assert torch.allclose(out, expected, atol=1e-5)
    assert torch.allclose(layer.running_mean, norm.running_mean, atol=1e-6)  # updated alike in training
    assert torch.allclose(layer.running_var, norm.running_var, atol=1e-5)
    grad = torch.randn_like(out)
    (out * grad).sum().backward()
    (expected * grad).sum().backward()
    assert torch.allclose(x.grad, x_ref.grad, atol=1e-5)
    assert torch.allclose(layer.weight.grad, norm.weight.grad, atol=1e-4)
    assert torch.allclose(layer.bias.grad, norm.bias.grad, atol=1e-4)
    conv_grad = conv.weight.grad[..., 0, 0]  # W = [W_1, W_2]; centre = W_1 - W_2, neighbour = W_2
    assert torch.allclose(layer.centre.weight.grad, conv_grad[:, :5], atol=1e-4)
    assert torch.allclose(layer.neighbour.weight.grad, conv_grad[:, :5] + conv_grad[:, 5:], atol=1e-4)


def test_edge_conv_keeps_no_edge_tensor_for_backward() -> None:
    """Memory kept for backward grows with B·N·C, not with k (the textbook layer keeps (B, N, k, C) tensors)."""

    def kept_bytes(k: int) -> int:
        layer = EdgeConv(16, 32)
        x = torch.randn(4, 256, 16, requires_grad=True)
        neighbours = knn_indices(x, k)
        saved: list[int] = []

        def pack(tensor: torch.Tensor) -> torch.Tensor:
            saved.append(tensor.numel() * tensor.element_size())
            return tensor

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            layer(x, neighbours)
        return sum(saved)

    assert kept_bytes(32) < 1.2 * kept_bytes(4)


# ------------------------------------------------------------------------------------------- in the model
def _model(depth: Encoder, fusion) -> MultimodalFERModel:
    face, physio = FaceCNN(out_dim=16, widths=(8, 16)), PhysioCNN(in_channels=3, out_dim=16, widths=(8,))
    return MultimodalFERModel({"face": face, "depth": depth, "physio": physio}, fusion, SYNTHAFFECT_LABEL_SPACE)


FUSIONS = {
    "attention": partial(AttentionFusion, d_model=16, num_heads=2, num_layers=1),
    "mult": partial(MulTFusion, d_model=16, num_heads=2, num_layers=1, out_dim=16),
}


@pytest.mark.parametrize("fusion", FUSIONS)
@pytest.mark.parametrize("name", ["pointnet_max_mean", "dgcnn"])
def test_inside_the_multimodal_model(name: str, fusion: str) -> None:
    torch.manual_seed(0)
    model = _model(ENCODERS[name](num_tokens=8), FUSIONS[fusion])
    assert model.uses_tokens == (fusion == "mult")
    inputs = {"face": torch.randn(4, 3, 32, 32), "depth": _cloud(4, 48), "physio": torch.randn(4, 3, 128)}
    present = {m: torch.ones(4, dtype=torch.bool) for m in inputs}
    present["depth"] = torch.tensor([True, False, True, True])
    out = model(inputs, present).heads
    sum(value.sum() for value in out.values()).backward()
    for param_name, param in model.encoders["depth"].named_parameters():
        assert param.grad is not None, param_name
    model.eval()  # the model's output does not depend on the order of the points either
    order = torch.randperm(48)
    shuffled = {**inputs, "depth": inputs["depth"][:, order]}
    with torch.no_grad():
        first, second = model(inputs, present).heads, model(shuffled, present).heads
    for task in first:
        assert torch.allclose(first[task], second[task], atol=1e-5), task


@pytest.mark.parametrize("config", PRESETS, ids=lambda p: p.stem)
def test_presets_build_and_train_on_points(config: Path) -> None:
    """Each preset's depth encoder (forward + backward); the fit runs in test_cli's every-config test."""
    settings = yaml.safe_load(config.read_text())
    assert settings["data"]["init_args"]["depth_input"] == "points"
    encoders = settings["model"]["init_args"]["encoders"]
    assert list(encoders) == ["depth"]  # an overlay of the depth encoder only
    entry = encoders["depth"]
    assert "Point" in entry["class_path"] or "DGCNN" in entry["class_path"]
    module_name, class_name = entry["class_path"].rsplit(".", 1)
    encoder = getattr(__import__(module_name, fromlist=[class_name]), class_name)(**entry["init_args"])
    assert encoder.modality == "depth"
    x = _cloud(2, 256)
    encoder(x).square().mean().backward()
    assert all(p.grad is not None for p in encoder.parameters())
    assert encoder.forward_tokens(x).shape == (2, 64, encoder.token_dim)


# ----------------------------------------------------------------------------------------- transforms, data
def test_normalize_points_centres_scales_and_refuses_non_finite() -> None:
    raw = (_cloud(3, 100) * torch.tensor([0.05] * 3 + [2.0] * 3) + torch.tensor([0.1, -0.2, 0.6, 0, 0, 0])).half()
    points = normalize_points(raw)
    assert points.dtype == torch.float32 and points.shape == (3, 100, 6)
    assert torch.allclose(points[..., :3].mean(dim=1), torch.zeros(3, 3), atol=1e-5)
    assert torch.allclose(points[..., :3].norm(dim=-1).amax(dim=1), torch.ones(3))
    assert torch.allclose(points[..., 3:].norm(dim=-1), torch.ones(3, 100), atol=1e-5)
    raw[1, 5, 2] = float("nan")
    raw[2, 0, 4] = float("inf")
    with pytest.raises(DataError, match=r"sample ids \[11, 12\]"):
        normalize_points(raw, torch.tensor([10, 11, 12]))
    with pytest.raises(DataError, match=r"batch positions \[1, 2\]"):
        normalize_points(raw)


def _blob_centres(face: torch.Tensor) -> torch.Tensor:
    """Centre of the bright blob of channels 0 and 1, in normalised image coordinates: (B, 2 blobs, 2)."""
    size = face.shape[-1]
    coords = (2 * torch.arange(size, dtype=torch.float32) + 1) / size - 1  # align_corners=False
    weight = (face[:, :2] - face[:, :2].amin(dim=(2, 3), keepdim=True)).clamp_min(0)  # (B, 2, H, W)
    weight = weight / weight.sum(dim=(2, 3), keepdim=True)
    x = (weight * coords.view(1, 1, 1, -1)).sum(dim=(2, 3))
    y = (weight * coords.view(1, 1, -1, 1)).sum(dim=(2, 3))
    return torch.stack([x, y], dim=-1)


def test_points_move_with_the_face() -> None:
    """Flip, in-plane rotation and zoom of the face warp act on the clouds of the same samples alike."""
    batch, size = 32, 96
    spots = torch.tensor([[0.45, 0.25], [-0.3, -0.4]])  # normalised (x right, y down), like camera x, y
    coords = (2 * torch.arange(size, dtype=torch.float32) + 1) / size - 1
    face = torch.zeros(batch, 3, size, size)
    for channel, (x, y) in enumerate(spots.tolist()):
        blob = torch.exp(-((coords.view(1, -1) - x) ** 2 + (coords.view(-1, 1) - y) ** 2) / (2 * 0.03**2))
        face[:, channel] = blob
    points = torch.zeros(batch, 2, 6)
    points[:, :, :2] = spots
    points[:, :, 5] = -1.0  # normals facing the camera
    generator = torch.Generator().manual_seed(3)
    warped, moved = augment_face_and_depth(face, points, generator=generator)
    image_offset = _blob_centres(warped)[:, 0] - _blob_centres(warped)[:, 1]  # translation cancels
    point_offset = moved[:, 0, :2] - moved[:, 1, :2]
    # Left over: the points' small yaw (cos 10° ≥ 0.98 on x) and jitter (≤ 0.03 per coordinate).
    assert (image_offset - point_offset).abs().max() < 0.08
    assert (image_offset[:, 0] > 0).any() and (image_offset[:, 0] < 0).any()  # some were flipped
    assert torch.allclose(moved[..., 3:].norm(dim=-1), torch.ones(batch, 2), atol=1e-5)


def test_augment_points_is_a_rigid_motion_plus_zoom() -> None:
    points = normalize_points(_cloud(4, 64))
    flip = torch.tensor([1.0, -1.0, 1.0, -1.0])
    out = augment_points(points, flip=flip, roll=torch.zeros(4), scale=torch.ones(4), max_yaw_degrees=0.0, jitter_std=0)
    assert torch.allclose(out[..., 0], points[..., 0] * flip.view(-1, 1), atol=1e-6)  # mirror x only
    assert torch.allclose(out[..., 1:3], points[..., 1:3], atol=1e-6)
    assert torch.allclose(out[..., 3], points[..., 3] * flip.view(-1, 1), atol=1e-6)
    turned = augment_points(points, torch.Generator().manual_seed(0), jitter_std=0)
    off_diagonal = ~torch.eye(64, dtype=torch.bool)
    ratio = (torch.cdist(turned[..., :3], turned[..., :3]) / torch.cdist(points[..., :3], points[..., :3]))[
        :, off_diagonal
    ]  # (B, pairs): one zoom per cloud
    assert (ratio.std(dim=1) < 1e-4).all()
    assert ((ratio.mean(dim=1) > 0.92 - 1e-4) & (ratio.mean(dim=1) < 1.08 + 1e-4)).all()
    assert torch.allclose(turned[..., 3:].norm(dim=-1), torch.ones(4, 64), atol=1e-5)


def _points_datamodule(root: Path, **overrides) -> SynthAffectDataModule:
    return SynthAffectDataModule(root=str(root), **{**TINY_DATA, "depth_input": "points", **overrides})


def test_datamodule_gives_normalised_points(tiny_cache: Path) -> None:
    dm = _points_datamodule(tiny_cache)
    batch = next(iter(dm.val_dataloader()))
    assert batch["depth"].dtype == torch.float16 and batch["depth"].shape == (4, 1024, 6)
    raw = batch["depth"].clone()
    stored = torch.from_numpy(dm.reader.array("points")[batch["index"].numpy()])
    assert torch.equal(raw, stored)
    out = dm.on_after_batch_transfer(batch, 0)  # no trainer: not training, no augmentation
    points = out["depth"]
    assert points.dtype == torch.float32 and points.shape == (4, 1024, 6)
    assert torch.allclose(points[..., :3].mean(dim=1), torch.zeros(4, 3), atol=1e-5)
    assert torch.allclose(points[..., :3].norm(dim=-1).amax(dim=1), torch.ones(4))
    assert torch.allclose(points[..., 3:].norm(dim=-1), torch.ones(4, 1024), atol=1e-4)
    assert torch.equal(points, normalize_points(raw))
    assert out[PRESENT_KEY]["depth"].all()


@pytest.mark.parametrize("modalities", [["face", "depth"], ["depth", "physio"]])
def test_points_are_augmented_only_in_training(tiny_cache: Path, modalities: list[str]) -> None:
    dm = _points_datamodule(tiny_cache, modalities=modalities)
    batch = next(iter(dm.val_dataloader()))
    evaluated = dm.on_after_batch_transfer({**batch, PRESENT_KEY: dict(batch[PRESENT_KEY])}, 0)["depth"]
    dm.trainer = SimpleNamespace(training=False)
    assert torch.equal(dm.on_after_batch_transfer(dict(batch), 0)["depth"], evaluated)
    dm.trainer = SimpleNamespace(training=True)
    trained = dm.on_after_batch_transfer(dict(batch), 0)["depth"]
    assert trained.shape == evaluated.shape and not torch.allclose(trained, evaluated, atol=1e-3)
    radius = trained[..., :3].norm(dim=-1).amax(dim=1)
    assert ((radius > 0.85) & (radius < 1.15)).all()
    assert torch.allclose(trained[..., 3:].norm(dim=-1), torch.ones(4, 1024), atol=1e-4)
    assert not torch.equal(dm.on_after_batch_transfer(dict(batch), 0)["depth"], trained)  # fresh draws
    off = _points_datamodule(tiny_cache, modalities=modalities, augment=False)
    off.trainer = SimpleNamespace(training=True)
    assert torch.equal(off.on_after_batch_transfer(dict(batch), 0)["depth"], evaluated)


def test_non_finite_points_are_refused_with_their_sample_ids(tiny_cache: Path) -> None:
    dm = _points_datamodule(tiny_cache)
    batch = next(iter(dm.test_dataloader()))
    batch["depth"][2, 7, 1] = float("nan")
    bad = int(batch["index"][2])
    with pytest.raises(CorruptCacheError, match=rf"NaN or inf values at sample ids \[{bad}\].*mfer prepare"):
        dm.on_after_batch_transfer(batch, 0)


def test_depth_maps_stay_the_default_and_bad_depth_input_is_refused(tiny_cache: Path) -> None:
    maps = SynthAffectDataModule(root=str(tiny_cache), **TINY_DATA)
    assert maps.depth_input == "map"
    batch = maps.on_after_batch_transfer(next(iter(maps.val_dataloader())), 0)
    assert batch["depth"].shape == (4, 2, 32, 32)
    with pytest.raises(ValueError, match="depth_input must be 'map'.*'points'.*'cloud'"):
        _points_datamodule(tiny_cache, depth_input="cloud")
