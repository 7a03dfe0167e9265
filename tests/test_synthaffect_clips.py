"""SynthAffect clip mode: temporal profile, clip rendering, unchanged default caches, clip batches."""

import importlib.util
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from multimodal_fer.datamodules import SynthAffectDataModule
from multimodal_fer.datamodules.device_transforms import augment_face_and_depth, normalize_face
from multimodal_fer.datamodules.synthaffect import build_synthaffect_cache as build_cache
from multimodal_fer.datasets.synthaffect.clip import ClipTiming, clip_profile, sample_clip_timing
from multimodal_fer.datasets.synthaffect.generator import SynthAffectSettings, array_specs, generate_sample
from multimodal_fer.datasets.synthaffect.labels import SYNTHAFFECT_AUS
from multimodal_fer.errors import DataError, StaleCacheError
from multimodal_fer.types import PRESENT_KEY

from conftest import TINY_CLIP_FRAMES, TINY_DATA

#: Rendering (and so generating caches) needs open3d; the profile, settings and transforms do not.
requires_open3d = pytest.mark.skipif(importlib.util.find_spec("open3d") is None, reason="rendering needs open3d")
SMALL = dict(num_subjects=3, samples_per_subject=2, image_size=32, audio_seconds=0.25, physio_seconds=4.0)
#: Fingerprints of the default settings computed by the generator before clip mode existed (the default cache at
#: data/synthaffect, built from the quickstart's data module settings, has the second one).
DEFAULT_SETTINGS_FINGERPRINT = "6690a035b48b10f72fe971c0db7a072681e23163bbbcac9db4cd18a7c247405a"
DEFAULT_DATAMODULE_FINGERPRINT = "189707c167e7f15de3f587a94993da5fc16dc6a243f811f1828e1aa280964864"
#: The fields of a cache without clips, as before clip mode existed.
STILL_FIELDS = [
    "face",
    "face_clean",
    "occlusion_mask",
    "occlusion_type",
    "landmarks",
    "depth",
    "points",
    "audio",
    "physio",
    "expr",
    "intensity",
    "au",
    "au_intensity",
    "va",
    "subject",
    "pose",
]


# ------------------------------------------------------------------------------------------------ profile
@pytest.mark.parametrize("frames", [3, 4, 6, 8, 16])
def test_profile_rises_from_neutral_to_the_apex_and_falls_back(frames: int) -> None:
    apex_frames = set()
    for seed in range(60):
        timing = sample_clip_timing(np.random.default_rng(seed), frames)
        profile = clip_profile(timing)
        assert profile.shape == (frames,) and profile.dtype == np.float32
        apex = int(np.argmax(profile))
        last_apex = frames - 1 - int(np.argmax(profile[::-1]))
        apex_frames.add(apex)
        assert profile[0] == 0.0 and profile[apex] == 1.0  # neutral start, a real apex frame
        assert 1 <= apex <= last_apex <= frames - 2
        assert np.all(profile[apex : last_apex + 1] == 1.0)  # the hold
        assert np.all(np.diff(profile[: apex + 1]) >= 0)  # onset rises
        assert np.all(np.diff(profile[last_apex:]) <= 0)  # offset falls
        assert profile[-1] <= 0.2 + 1e-6 and profile[-1] == pytest.approx(timing.residual, abs=1e-6)
    if frames >= 6:
        assert len(apex_frames) >= 3  # where the apex sits varies from sample to sample


def test_profile_follows_the_documented_phases() -> None:
    timing = ClipTiming(frames=9, onset_start=1.0, apex_start=3.0, apex_end=5.0, offset_end=7.0, residual=0.1)
    profile = clip_profile(timing)
    # smoothstep(0.5) = 0.5 halfway through the onset (t = 2) and the offset (t = 6): 1 - 0.9 * 0.5 = 0.55.
    np.testing.assert_allclose(profile, [0, 0, 0.5, 1, 1, 1, 0.55, 0.1, 0.1], atol=1e-6)


def test_too_short_clips_are_refused() -> None:
    with pytest.raises(DataError, match="at least 3 frames"):
        sample_clip_timing(np.random.default_rng(0), 2)
    for frames in (1, 2, -4):
        with pytest.raises(ValueError, match=f"clip_frames={frames}: use 0"):
            SynthAffectSettings(**SMALL, clip_frames=frames)


# ------------------------------------------------------------------------------------------------ rendering
def _clip_sample(index: int, **overrides: object) -> dict[str, np.ndarray]:
    return generate_sample(SynthAffectSettings(**{**SMALL, "clip_frames": 6, **overrides}), index)


@requires_open3d
def test_clip_fields_shapes_dtypes_and_determinism() -> None:
    sample = _clip_sample(3)
    assert sample["face_clip"].shape == (6, 3, 32, 32) and sample["face_clip"].dtype == np.uint8
    assert sample["face_clip_profile"].shape == (6,) and sample["face_clip_profile"].dtype == np.float32
    specs = {spec.name: spec for spec in array_specs(SynthAffectSettings(**SMALL, clip_frames=6))}
    for name in ("face_clip", "face_clip_profile"):
        assert sample[name].shape == specs[name].shape and sample[name].dtype == np.dtype(specs[name].dtype)
    again = _clip_sample(3)
    for name in sample:
        assert np.array_equal(sample[name], again[name]), name
    assert not np.array_equal(_clip_sample(4)["face_clip"], sample["face_clip"])


@requires_open3d
def test_clip_keeps_the_still_face_and_every_other_field() -> None:
    still = generate_sample(SynthAffectSettings(**SMALL, occlusion_probability=0.0), 2)
    clip = _clip_sample(2, occlusion_probability=0.0)
    for name, value in still.items():
        assert np.array_equal(clip[name], value), name
    frames, profile = clip["face_clip"], clip["face_clip_profile"]
    apex = int(np.argmax(profile))
    assert np.array_equal(frames[apex], clip["face_clean"]) and np.array_equal(frames[apex], clip["face"])
    # Same background, light and noise level: frames differ from the apex only by the expression and fresh noise.
    others = [t for t in range(len(profile)) if t != apex]
    corner = (slice(None), slice(0, 4), slice(0, 4))
    for t in others:
        assert not np.array_equal(frames[t], frames[apex])  # fresh sensor noise on every other frame
        difference = np.abs(frames[t][corner].astype(int) - frames[apex][corner].astype(int))
        assert difference.mean() < 12  # background corner: noise only


@requires_open3d
def test_occluded_still_face_puts_the_same_occluder_on_every_frame() -> None:
    sample = _clip_sample(1, occlusion_probability=1.0)
    mask = sample["occlusion_mask"][0].astype(bool)
    assert sample["occlusion_type"] >= 0 and mask.any()
    frames = sample["face_clip"]
    for frame in frames:
        assert np.array_equal(frame[:, mask], sample["face"][:, mask])
    apex = int(np.argmax(sample["face_clip_profile"]))
    assert np.array_equal(frames[apex], sample["face"])
    assert not np.array_equal(frames[0][:, ~mask], frames[apex][:, ~mask])  # the face itself still moves


@requires_open3d
def test_frames_follow_the_profile_onset_apex_offset() -> None:
    """The image's departure from the neutral first frame rises to the apex and falls back with the profile."""
    from multimodal_fer.datasets.synthaffect.clip import render_face_clip
    from multimodal_fer.datasets.synthaffect.face_model import FaceIdentity

    au = np.zeros(len(SYNTHAFFECT_AUS), np.float32)
    for number, value in {12: 1.0, 6: 0.8, 26: 0.9, 25: 1.0, 1: 0.7, 2: 0.7}.items():
        au[SYNTHAFFECT_AUS.index(number)] = value
    timing = ClipTiming(frames=7, onset_start=0.5, apex_start=3.0, apex_end=3.5, offset_end=6.0, residual=0.05)
    profile = clip_profile(timing)
    rng = np.random.default_rng(0)
    frames = render_face_clip(
        FaceIdentity(),
        au,
        0.0,
        profile,
        image_size=64,
        yaw=0.0,
        pitch=0.0,
        roll=0.0,
        light_direction=np.array([0.2, 0.3, 1.0]),
        ambient=0.35,
        render_state=rng.bit_generator.state,
        noise_rng=np.random.default_rng(1),
    ).astype(np.float64)
    assert frames.shape == (7, 3, 64, 64)
    # 4 x 4 average pooling keeps the expression and averages the per-frame sensor noise away.
    pooled = frames.reshape(7, 3, 16, 4, 16, 4).mean(axis=(3, 5))
    departure = np.abs(pooled - pooled[0]).mean(axis=(1, 2, 3))
    apex = int(np.argmax(profile))
    assert int(np.argmax(departure)) == apex
    assert departure[apex] > 4 * departure[1] and departure[apex] > 4 * departure[-1]
    assert np.all(np.diff(departure[: apex + 1]) > 0) and np.all(np.diff(departure[apex:]) < 0)
    assert np.corrcoef(departure, profile)[0, 1] > 0.95


# --------------------------------------------------------------------------------------- default unchanged
def test_default_fingerprints_are_those_of_existing_caches() -> None:
    assert SynthAffectSettings().fingerprint() == DEFAULT_SETTINGS_FINGERPRINT
    assert SynthAffectDataModule().cache_fingerprint == DEFAULT_DATAMODULE_FINGERPRINT
    assert "clip_frames" not in SynthAffectSettings().fingerprint_settings()
    assert [spec.name for spec in array_specs(SynthAffectSettings())] == STILL_FIELDS
    clips = SynthAffectSettings(clip_frames=8)
    assert clips.fingerprint_settings()["clip_frames"] == 8
    assert clips.fingerprint() not in (DEFAULT_SETTINGS_FINGERPRINT, SynthAffectSettings(clip_frames=6).fingerprint())
    assert [spec.name for spec in array_specs(clips)] == [*STILL_FIELDS, "face_clip", "face_clip_profile"]


@requires_open3d
def test_clip_mode_adds_fields_and_leaves_every_other_array_byte_identical(tmp_path: Path) -> None:
    settings = SynthAffectSettings(**SMALL, occlusion_probability=0.5, seed=2)
    still = build_cache(settings, tmp_path / "still", num_workers=1)
    clips = build_cache(
        SynthAffectSettings(**SMALL, occlusion_probability=0.5, seed=2, clip_frames=4), tmp_path / "c", num_workers=1
    )
    assert set(clips.manifest["sha256"]) == {*STILL_FIELDS, "face_clip", "face_clip_profile"}
    assert set(still.manifest["sha256"]) == set(STILL_FIELDS)
    for name in STILL_FIELDS:
        assert clips.manifest["sha256"][name] == still.manifest["sha256"][name], name
    manifest = json.loads((tmp_path / "still" / "manifest.json").read_text())
    assert "clip_frames" not in manifest["settings"] and manifest["fingerprint"] == settings.fingerprint()
    assert clips.manifest["settings"]["clip_frames"] == 4
    again = build_cache(
        SynthAffectSettings(**SMALL, occlusion_probability=0.5, seed=2, clip_frames=4), tmp_path / "d", num_workers=1
    )
    assert again.manifest["sha256"] == clips.manifest["sha256"]  # deterministic


# --------------------------------------------------------------------------------------------- data module
def _clip_datamodule(root: Path, **overrides: object) -> SynthAffectDataModule:
    args = {**TINY_DATA, "clip_frames": TINY_CLIP_FRAMES, "face_clip": True, **overrides}
    return SynthAffectDataModule(root=str(root), **args)


@requires_open3d
def test_datamodule_delivers_standardised_clips(tiny_clip_cache: Path) -> None:
    dm = _clip_datamodule(tiny_clip_cache)
    batch = next(iter(dm.val_dataloader()))
    raw = batch["face"]
    assert raw.dtype == torch.uint8 and raw.shape == (4, TINY_CLIP_FRAMES, 3, 32, 32)
    stored = torch.from_numpy(dm.reader.array("face_clip")[batch["index"].numpy()])
    assert torch.equal(raw, stored) and batch[PRESENT_KEY]["face"].all()
    out = dm.on_after_batch_transfer(dict(batch), 0)
    face = out["face"]
    assert face.dtype == torch.float32 and face.shape == (4, TINY_CLIP_FRAMES, 3, 32, 32)
    for t in range(TINY_CLIP_FRAMES):  # each frame exactly as a still face is standardised
        torch.testing.assert_close(face[:, t], normalize_face(raw[:, t]))
    assert torch.allclose(face.mean(dim=(2, 3, 4)), torch.zeros(4, TINY_CLIP_FRAMES), atol=1e-4)
    assert out["depth"].shape == (4, 2, 32, 32)


@requires_open3d
def test_clip_cache_still_serves_still_faces(tiny_clip_cache: Path) -> None:
    dm = _clip_datamodule(tiny_clip_cache, face_clip=False)
    batch = next(iter(dm.val_dataloader()))
    assert batch["face"].shape == (4, 3, 32, 32)
    assert torch.equal(batch["face"], torch.from_numpy(dm.reader.array("face")[batch["index"].numpy()]))


@requires_open3d
def test_training_clips_are_augmented_as_a_whole(tiny_clip_cache: Path) -> None:
    dm = _clip_datamodule(tiny_clip_cache)
    batch = next(iter(dm.val_dataloader()))
    evaluated = dm.on_after_batch_transfer(dict(batch), 0)["face"]
    dm.trainer = SimpleNamespace(training=True)
    trained = dm.on_after_batch_transfer(dict(batch), 0)["face"]
    assert trained.shape == evaluated.shape and not torch.allclose(trained, evaluated, atol=1e-3)
    off = _clip_datamodule(tiny_clip_cache, augment=False)
    off.trainer = SimpleNamespace(training=True)
    assert torch.equal(off.on_after_batch_transfer(dict(batch), 0)["face"], evaluated)


def test_clip_augmentation_is_the_still_augmentation_of_each_frame() -> None:
    torch.manual_seed(0)
    clips = torch.randn(3, 5, 3, 16, 16)
    depth = torch.randn(3, 2, 16, 16)
    warped, warped_depth = augment_face_and_depth(clips, depth, generator=torch.Generator().manual_seed(7))
    assert warped.shape == clips.shape
    for t in range(5):  # the same draws as for a batch of still faces, applied to every frame
        still, still_depth = augment_face_and_depth(clips[:, t], depth, generator=torch.Generator().manual_seed(7))
        torch.testing.assert_close(warped[:, t], still)
        torch.testing.assert_close(warped_depth, still_depth)
    frozen = clips[:, :1].expand(-1, 5, -1, -1, -1).contiguous()  # a clip of one repeated frame stays so
    out, _ = augment_face_and_depth(frozen, None, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(out, out[:, :1].expand_as(out))
    with pytest.raises(DataError, match="aligned images"):
        augment_face_and_depth(clips, None, aligned={"face_clean": clips[:, 0]})
    with pytest.raises(DataError, match=r"\(B, T, 3, H, W\)"):
        augment_face_and_depth(torch.randn(3, 16, 16), None)


@requires_open3d
def test_clips_asked_of_a_cache_without_them_name_the_fix(tiny_cache: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"clip_frames=0.*clip_frames.*data/synthaffect_clips.*mfer prepare"):
        _clip_datamodule(tmp_path, clip_frames=0)
    dm = _clip_datamodule(tiny_cache)  # the still-face cache of the same settings
    with pytest.raises(StaleCacheError, match=r"has no face clips.*root=data/synthaffect_clips.*mfer prepare"):
        dm.prepare_data()
    with pytest.raises(StaleCacheError, match="has no face clips"):
        dm.setup("fit")
    assert "clip_frames" not in json.loads((tiny_cache / "manifest.json").read_text())["settings"]  # left alone


def test_clip_settings_that_cannot_work_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="face modality is not loaded"):
        _clip_datamodule(tmp_path, modalities=["audio"])
    for setting in ({"restoration_targets": True}, {"online_occlusion_probability": 0.5}, {"clean_faces": True}):
        with pytest.raises(ValueError, match="still faces only"):
            _clip_datamodule(tmp_path, **setting)
