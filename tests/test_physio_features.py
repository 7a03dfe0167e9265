"""Physiological features: extractor (neurokit2), validity flags, side cache, data module fields, feature branch."""

import json
import sys
import warnings
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from multimodal_fer.datamodules import SynthAffectDataModule
from multimodal_fer.datamodules.physio_feature_batches import PhysioFeatureStandardizer
from multimodal_fer.datamodules.synthaffect import build_synthaffect_cache as build_cache
from multimodal_fer.datasets.synthaffect.generator import SynthAffectSettings
from multimodal_fer.datasets.synthaffect.labels import SYNTHAFFECT_LABEL_SPACE
from multimodal_fer.datasets.synthaffect.physio import sample_physio_baseline, simulate_physio
from multimodal_fer.errors import CorruptCacheError, DataError, MissingDependencyError, StaleCacheError
from multimodal_fer.models.encoders import PhysioCNN
from multimodal_fer.models.fusion import AttentionFusion, MulTFusion
from multimodal_fer.models.multimodal import MultimodalFERModel
from multimodal_fer.preprocessing import physio_feature_cache as side_cache
from multimodal_fer.preprocessing.cache import ArraySpec, CacheReader, CacheWriter, fingerprint, open_for_writing
from multimodal_fer.preprocessing.physio_feature_extraction import (
    NUM_PHYSIO_FEATURES,
    PHYSIO_FEATURE_NAMES,
    InvalidReason,
    PhysioFeatureExtractor,
)

from conftest import CONFIGS

nk = pytest.importorskip("neurokit2")

FS = 128
CHANNELS = ("ecg", "eda", "rsp")
INDEX = {name: i for i, name in enumerate(PHYSIO_FEATURE_NAMES)}
FREQUENCY_HRV = ("hrv_lf", "hrv_hf", "hrv_lf_hf")


def _window(seconds: float, seed: int = 0, arousal: float = 0.0, rate: int = FS) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return simulate_physio(sample_physio_baseline(rng), arousal, 0.0, seconds, rate, rng)


def _reasons(result, names) -> list[InvalidReason]:
    return [InvalidReason(int(result.reasons[INDEX[n]])) for n in names]


# ------------------------------------------------------------------------------------------------ extractor
@pytest.mark.parametrize("heart_rate", [60, 95])
def test_heart_rate_is_recovered_from_simulated_ecg(heart_rate: int) -> None:
    ecg = nk.ecg_simulate(duration=12, sampling_rate=FS, heart_rate=heart_rate, random_state=1, noise=0.01)
    result = PhysioFeatureExtractor(FS, ["ecg"])(ecg[None])
    assert result.valid[INDEX["heart_rate_mean"]]
    assert result.values[INDEX["heart_rate_mean"]] == pytest.approx(heart_rate, abs=2.0)
    # 12 s holds RMSSD (10 s) but not SDNN (30 s), pNN50 (60 s) or spectral HRV.
    assert result.valid[INDEX["hrv_rmssd"]] and result.values[INDEX["hrv_rmssd"]] > 0
    assert set(_reasons(result, ("hrv_sdnn", "hrv_pnn50", *FREQUENCY_HRV))) == {InvalidReason.WINDOW_TOO_SHORT}
    assert set(_reasons(result, ("eda_scl_mean", "rsp_rate"))) == {InvalidReason.CHANNEL_MISSING}


@pytest.mark.parametrize("breaths_per_minute", [12, 20])
def test_breathing_rate_is_recovered_from_simulated_respiration(breaths_per_minute: int) -> None:
    rsp = nk.rsp_simulate(duration=40, sampling_rate=FS, respiratory_rate=breaths_per_minute, random_state=2)
    result = PhysioFeatureExtractor(FS, ["rsp"])(rsp[None])
    assert result.valid[INDEX["rsp_rate"]]
    assert result.values[INDEX["rsp_rate"]] == pytest.approx(breaths_per_minute, abs=1.5)
    assert _reasons(result, ["rsp_rate_variability"]) == [InvalidReason.WINDOW_TOO_SHORT]  # needs 60 s


def test_eda_level_and_responses_are_measured_in_microsiemens() -> None:
    t = np.arange(20 * FS) / FS
    scr = np.where(t > 6, (1 - np.exp(-(t - 6) / 0.75)) * np.exp(-(t - 6) / 4.0), 0.0)  # rises ~1.5 s, then decays
    amplitude = 0.5 / scr.max()
    noise = np.random.default_rng(0).normal(0, 0.005, t.size)
    with_scr = PhysioFeatureExtractor(FS, ["eda"])((5.0 + amplitude * scr + noise)[None])
    assert with_scr.values[INDEX["eda_scr_count"]] == 1
    assert with_scr.values[INDEX["eda_scr_amplitude_mean"]] == pytest.approx(0.5, abs=0.1)
    assert with_scr.values[INDEX["eda_scl_mean"]] == pytest.approx(5.0, abs=0.3)
    # Noise alone: no response counted (neurokit2's own threshold is relative to the largest peak), and the
    # mean amplitude of no response is invalid, not 0.
    quiet = PhysioFeatureExtractor(FS, ["eda"])((5.0 + noise)[None])
    assert quiet.valid[INDEX["eda_scr_count"]] and quiet.values[INDEX["eda_scr_count"]] == 0
    assert _reasons(quiet, ["eda_scr_amplitude_mean"]) == [InvalidReason.TOO_FEW_EVENTS]


def test_short_window_flags_spectral_hrv_invalid_and_stores_zero() -> None:
    result = PhysioFeatureExtractor(FS, CHANNELS)(_window(8.0))
    assert set(_reasons(result, FREQUENCY_HRV)) == {InvalidReason.WINDOW_TOO_SHORT}
    assert all(result.values[INDEX[n]] == 0 for n in FREQUENCY_HRV)
    assert result.valid[INDEX["heart_rate_mean"]] and result.valid[INDEX["eda_scl_mean"]]
    assert all(v is None for k, v in result.as_dict().items() if k in FREQUENCY_HRV)


def test_five_minute_window_makes_every_feature_valid() -> None:
    result = PhysioFeatureExtractor(FS, CHANNELS)(_window(300.0, seed=3))
    assert result.valid.all(), dict(zip(PHYSIO_FEATURE_NAMES, _reasons(result, PHYSIO_FEATURE_NAMES), strict=True))
    values = result.as_dict()
    assert 40 < values["heart_rate_mean"] < 150 and values["hrv_lf"] > 0 and values["hrv_hf"] > 0
    assert values["hrv_lf_hf"] == pytest.approx(values["hrv_lf"] / values["hrv_hf"], rel=1e-3)
    assert 6 < values["rsp_rate"] < 35 and values["rsp_rate_variability"] > 0


def test_nan_flat_and_missing_channels_are_flagged() -> None:
    signals = _window(12.0).astype(np.float64)
    signals[0, 100] = np.nan  # ECG with a gap
    signals[1] = 4.2  # flat EDA (electrode off)
    result = PhysioFeatureExtractor(FS, CHANNELS)(signals)
    ecg = [n for n in PHYSIO_FEATURE_NAMES if n.startswith(("heart", "hrv"))]
    eda = [n for n in PHYSIO_FEATURE_NAMES if n.startswith("eda")]
    assert set(_reasons(result, ecg)) == {InvalidReason.CHANNEL_NOT_FINITE}
    assert set(_reasons(result, eda)) == {InvalidReason.CHANNEL_FLAT}
    assert np.all(result.values[[INDEX[n] for n in ecg + eda]] == 0)
    # A data set without EDA: its features are invalid, the others still computed.
    no_eda = PhysioFeatureExtractor(FS, ["ECG", "RSP"])(_window(12.0)[[0, 2]])
    assert set(_reasons(no_eda, eda)) == {InvalidReason.CHANNEL_MISSING}
    assert no_eda.valid[INDEX["heart_rate_mean"]]


def test_sampling_rate_too_low_is_refused_or_flagged() -> None:
    with pytest.raises(DataError, match=r"ECG channel is sampled at 32 Hz, below the 50 Hz"):
        PhysioFeatureExtractor(32, CHANNELS)
    PhysioFeatureExtractor(32, ["eda"])  # EDA alone is fine at 32 Hz
    result = PhysioFeatureExtractor(80, CHANNELS)(_window(40.0, rate=80))  # 80 Hz: HR yes, HRV no
    assert result.valid[INDEX["heart_rate_mean"]]
    assert set(_reasons(result, ("hrv_rmssd", "hrv_sdnn"))) == {InvalidReason.SAMPLING_RATE_TOO_LOW}
    with pytest.raises(DataError, match="shape"):
        PhysioFeatureExtractor(FS, CHANNELS)(np.zeros((2, 512)))


def test_neurokit_warnings_do_not_escape() -> None:
    extractor = PhysioFeatureExtractor(FS, CHANNELS)
    odd = _window(4.0)
    odd[2] = np.sin(np.arange(odd.shape[1]) / 3.0)  # respiration far too fast
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        extractor.extract_many(np.stack([odd, _window(4.0, seed=1), np.zeros_like(odd)]))
    assert not caught, [str(w.message) for w in caught]


def test_missing_neurokit_is_an_error_not_invalid_features(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "neurokit2", None)  # as on a machine without it
    with pytest.raises(MissingDependencyError, match="pip install neurokit2"):
        PhysioFeatureExtractor(FS, CHANNELS)(_window(8.0))


# ----------------------------------------------------------------------------------------------- side cache
def _data_cache(root: Path, seed: int = 0, num: int = 6, seconds: float = 4.0) -> CacheReader:
    rng = np.random.default_rng(seed)
    baseline = sample_physio_baseline(rng)
    signals = np.stack([simulate_physio(baseline, a, 0.0, seconds, FS, rng) for a in np.linspace(-1, 1, num)])
    settings = {"dataset": "fake", "seed": seed, "physio_sample_rate": FS}
    spec = ArraySpec("physio", signals.shape[1:], "float16")
    writer = CacheWriter(root, [spec], num, fingerprint(settings), settings, {"physio_channels": list(CHANNELS)})
    arrays = open_for_writing(root, ["physio"])
    arrays["physio"][:] = signals
    arrays["physio"].flush()
    del arrays
    writer.mark_done(np.arange(num))
    writer.finalize()
    return CacheReader(root)


def test_side_cache_is_built_beside_the_data_cache_without_touching_it(tmp_path: Path) -> None:
    source = _data_cache(tmp_path / "data")
    manifest_before = (source.root / "manifest.json").read_bytes()
    side = side_cache.build_physio_feature_cache(source, num_workers=1, chunk_size=4)
    assert side.root == tmp_path / "data" / "physio_features"
    features, valid = np.load(side.root / "features.npy"), np.load(side.root / "valid.npy")
    assert features.shape == valid.shape == (6, NUM_PHYSIO_FEATURES)
    assert features.dtype == np.float32 and valid.dtype == np.bool_
    assert np.all(features[~valid] == 0) and valid[:, INDEX["heart_rate_mean"]].all()
    expected = PhysioFeatureExtractor(FS, CHANNELS).extract_many(np.asarray(source.array("physio")))
    np.testing.assert_array_equal(features, expected[0])
    manifest = json.loads((side.root / "manifest.json").read_text())
    assert manifest["settings"]["feature_names"] == list(PHYSIO_FEATURE_NAMES)
    assert manifest["settings"]["source_fingerprint"] == source.fingerprint
    assert manifest["summary"]["hrv_lf"] == {"valid": 0, "invalid": {"window_too_short": 6}}
    assert "hrv_lf 0 (window_too_short 6)" in side_cache.describe_summary(manifest["summary"])  # what mfer prints
    mixed = {"rsp_rate": {"valid": 2, "invalid": {"channel_flat": 1, "too_few_events": 3}}, "eda": {"valid": 4}}
    assert side_cache.describe_summary(mixed) == "rsp_rate 2 (too_few_events 3, channel_flat 1), eda 4"
    assert (source.root / "manifest.json").read_bytes() == manifest_before
    CacheReader(source.root, expected_fingerprint=source.fingerprint).verify_checksums()
    assert side_cache.open_physio_feature_cache(source, "hint").fingerprint == side.fingerprint


def test_missing_and_stale_side_caches_are_refused_with_the_command(tmp_path: Path, monkeypatch) -> None:
    source = _data_cache(tmp_path / "data")
    hint = "mfer physio-features --config C"
    with pytest.raises(CorruptCacheError, match="none was built.*mfer physio-features --config C"):
        side_cache.open_physio_feature_cache(source, hint)
    side_cache.build_physio_feature_cache(source, num_workers=1)
    # The data cache is rebuilt with other settings: its fingerprint changes, the side cache is stale.
    rebuilt = _data_cache(tmp_path / "data2", seed=1)
    stale_root = side_cache.physio_feature_root(source.root)
    with pytest.raises(StaleCacheError, match=r"source_fingerprint.*mfer physio-features --config C"):
        side_cache.open_physio_feature_cache(rebuilt, hint, root=stale_root)
    # The extractor changed: stale too; building again refuses unless asked to overwrite.
    monkeypatch.setattr(side_cache, "EXTRACTOR_VERSION", 99)
    with pytest.raises(StaleCacheError, match=r"extractor_version: 1 → 99"):
        side_cache.open_physio_feature_cache(source, hint)
    with pytest.raises(StaleCacheError, match="overwrite"):
        side_cache.build_physio_feature_cache(source, num_workers=1, rebuild_hint="use --overwrite")
    rebuilt_side = side_cache.build_physio_feature_cache(source, num_workers=1, overwrite=True)
    assert rebuilt_side.manifest["settings"]["extractor_version"] == 99
    with pytest.raises(DataError, match="would contain the data cache"):
        side_cache.build_physio_feature_cache(source, root=source.root, num_workers=1)


def test_interrupted_side_cache_is_not_complete_and_resumes(tmp_path: Path, monkeypatch) -> None:
    source = _data_cache(tmp_path / "data", num=6)
    real_call = side_cache._FeatureProducer.__call__
    calls: list[int] = []

    def crash_after_two(self, index):
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(index)
        return real_call(self, index)

    monkeypatch.setattr(side_cache._FeatureProducer, "__call__", crash_after_two)
    with pytest.raises(KeyboardInterrupt):
        side_cache.build_physio_feature_cache(source, num_workers=1, chunk_size=2)
    with pytest.raises(CorruptCacheError, match="interrupted build"):
        side_cache.open_physio_feature_cache(source, "hint")

    def record(self, index):
        calls.append(index)
        return real_call(self, index)

    monkeypatch.setattr(side_cache._FeatureProducer, "__call__", record)
    resumed = side_cache.build_physio_feature_cache(source, num_workers=1, chunk_size=2)
    assert calls == [0, 1, 2, 3, 4, 5]  # the first chunk was not computed twice
    fresh = side_cache.build_physio_feature_cache(source, root=tmp_path / "fresh", num_workers=1)
    np.testing.assert_array_equal(resumed.array("features"), fresh.array("features"))
    np.testing.assert_array_equal(resumed.array("valid"), fresh.array("valid"))


# ----------------------------------------------------------------------------------------------- data module
@pytest.fixture(scope="module")
def small_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("physio") / "synthaffect"
    build_cache(
        SynthAffectSettings(
            num_subjects=4, samples_per_subject=3, image_size=32, audio_seconds=0.5, physio_seconds=4.0
        ),
        root,
        num_workers=1,
    )
    return root


def _datamodule(root: Path, **overrides) -> SynthAffectDataModule:
    args = dict(
        num_subjects=4,
        samples_per_subject=3,
        image_size=32,
        audio_seconds=0.5,
        physio_seconds=4.0,
        val_subjects=1,
        test_subjects=1,
        batch_size=4,
        num_workers=0,
        physio_features=True,
    )
    args.update(overrides)
    return SynthAffectDataModule(root=str(root), **args)


def test_data_module_without_side_cache_names_the_command(tmp_path: Path, small_cache: Path) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(small_cache, copy, ignore=shutil.ignore_patterns("physio_features"))
    with pytest.raises(CorruptCacheError, match=r"mfer physio-features --config"):
        _datamodule(copy).setup()
    _datamodule(copy, physio_features=False).setup()  # off: nothing needed
    _datamodule(copy, modalities=["face", "audio"]).setup()  # no physio loaded: nothing needed


def test_data_module_batches_carry_standardised_features_and_flags(small_cache: Path) -> None:
    side_cache.build_physio_feature_cache(CacheReader(small_cache), num_workers=1)
    datamodule = _datamodule(small_cache)
    datamodule.setup()
    batch = next(iter(datamodule.train_dataloader()))
    raw = side_cache.CacheReader(side_cache.physio_feature_root(small_cache))
    index = batch["index"].numpy()
    assert (
        batch["physio_features"].shape == (4, NUM_PHYSIO_FEATURES) and batch["physio_features"].dtype == torch.float32
    )
    assert batch["physio_features_valid"].dtype == torch.bool
    np.testing.assert_array_equal(batch["physio_features"].numpy(), raw.array("features")[index])
    out = datamodule.on_after_batch_transfer(batch, 0)
    values, flags = out["physio_features"], out["physio_features_valid"]
    assert torch.all(values[~flags] == 0) and flags[:, INDEX["heart_rate_mean"]].all()
    assert not flags[:, INDEX["hrv_lf"]].any()  # 4 s windows
    # Standardised with training statistics: the training split's valid heart rates have mean 0, std 1.
    train = np.sort(datamodule.splits["train"])
    heart = torch.as_tensor(raw.array("features")[train][:, INDEX["heart_rate_mean"]])
    mean, std = datamodule.physio_feature_standardizer.mean, datamodule.physio_feature_standardizer.std
    assert mean[INDEX["heart_rate_mean"]] == pytest.approx(float(heart.double().mean()), rel=1e-5)
    assert std[INDEX["heart_rate_mean"]] == pytest.approx(float(heart.double().std()), rel=1e-4)
    for loader in (datamodule.val_dataloader(), datamodule.test_dataloader()):
        assert "physio_features_valid" in next(iter(loader))


def test_standardisation_ignores_invalid_entries() -> None:
    rng = np.random.default_rng(0)
    features = rng.normal(70, 10, size=(50, NUM_PHYSIO_FEATURES)).astype(np.float32)
    valid = rng.random((50, NUM_PHYSIO_FEATURES)) < 0.6
    valid[:, INDEX["hrv_lf"]] = False  # never valid in training
    reference = PhysioFeatureStandardizer.fit(features, valid)
    poisoned = np.where(valid, features, 1e9).astype(np.float32)
    fitted = PhysioFeatureStandardizer.fit(poisoned, valid)
    np.testing.assert_allclose(fitted.mean, reference.mean)
    np.testing.assert_allclose(fitted.std, reference.std)
    out, flags = fitted(torch.from_numpy(poisoned), torch.from_numpy(valid))
    assert torch.all(out[~flags] == 0) and not flags[:, INDEX["hrv_lf"]].any()
    assert out.abs().max() <= 10


# ---------------------------------------------------------------------------------------------------- encoder
def _side(batch: int, seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {
        "physio_features": torch.randn(batch, NUM_PHYSIO_FEATURES, generator=generator),
        "physio_features_valid": torch.rand(batch, NUM_PHYSIO_FEATURES, generator=generator) < 0.5,
    }


@pytest.mark.parametrize("feature_mlp", [False, True])
def test_encoder_forward_backward_with_and_without_the_branch(feature_mlp: bool) -> None:
    torch.manual_seed(0)
    encoder = PhysioCNN(out_dim=16, widths=(8, 16), feature_mlp=feature_mlp, feature_hidden_dim=8)
    assert encoder.side_inputs == (("physio_features", "physio_features_valid") if feature_mlp else ())
    x = torch.randn(3, 3, 256, requires_grad=True)
    side = _side(3) if feature_mlp else {}
    y = encoder(x, **side)
    assert y.shape == (3, 16) and torch.isfinite(y).all()
    y.square().mean().backward()
    assert x.grad is not None
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in encoder.parameters())
    encoder.eval()
    tokens = encoder.forward_tokens(x, **side)
    assert tokens.shape[0] == 3 and tokens.shape[2] == 16
    torch.testing.assert_close(tokens.mean(dim=1), encoder(x, **side), rtol=1e-4, atol=1e-5)


def test_encoder_output_cannot_depend_on_invalid_feature_values() -> None:
    torch.manual_seed(0)
    encoder = PhysioCNN(out_dim=16, widths=(8, 16), feature_mlp=True, feature_hidden_dim=8).eval()
    x = torch.randn(4, 3, 256)
    side = _side(4)
    invalid = ~side["physio_features_valid"]
    changed = side["physio_features"].clone()
    changed[invalid] = torch.tensor([float("nan"), 1e6, -3.0, float("inf")]).repeat(64)[: int(invalid.sum())]
    reference = encoder(x, **side)
    torch.testing.assert_close(encoder(x, changed, side["physio_features_valid"]), reference, rtol=0, atol=0)
    torch.testing.assert_close(
        encoder.forward_tokens(x, changed, side["physio_features_valid"]),
        encoder.forward_tokens(x, **side),
        rtol=0,
        atol=0,
    )
    # The values of valid entries and the flags themselves do reach the output.
    nudged = side["physio_features"] + side["physio_features_valid"].float()
    assert not torch.allclose(encoder(x, nudged, side["physio_features_valid"]), reference)
    flipped = side["physio_features_valid"].clone()
    flipped[0, 0] = ~flipped[0, 0]
    assert not torch.allclose(encoder(x, side["physio_features"], flipped)[0], reference[0])


def test_encoder_without_features_in_the_batch_says_how_to_load_them() -> None:
    encoder = PhysioCNN(out_dim=8, widths=(8,), feature_mlp=True)
    with pytest.raises(ValueError, match=r"data\.init_args\.physio_features=true"):
        encoder(torch.randn(2, 3, 128))
    with pytest.raises(ValueError, match="num_features"):
        encoder(torch.randn(2, 3, 128), torch.zeros(2, 5), torch.ones(2, 5, dtype=torch.bool))


@pytest.mark.parametrize(
    "fusion",
    [partial(AttentionFusion, d_model=16, num_heads=2), partial(MulTFusion, d_model=8, num_heads=2, out_dim=16)],
    ids=["attention", "mult"],
)
def test_model_slices_features_to_present_samples(fusion) -> None:
    torch.manual_seed(0)
    encoder = PhysioCNN(out_dim=16, widths=(8, 16), feature_mlp=True, feature_hidden_dim=8)
    model = MultimodalFERModel({"physio": encoder}, fusion, SYNTHAFFECT_LABEL_SPACE)
    inputs = {"physio": torch.randn(4, 3, 256), **_side(4)}
    present = {"physio": torch.tensor([True, False, True, True])}
    outputs = model(inputs, present).heads
    sum(o.square().mean() for o in outputs.values()).backward()
    assert encoder.fc.weight.grad is not None and encoder.feature_branch[0].weight.grad is not None


@pytest.mark.parametrize("preset", ["physio_cnn_small.yaml", "physio_cnn_features.yaml"])
def test_presets_build_and_train_a_step(preset: str) -> None:
    config = yaml.safe_load((CONFIGS / "encoders" / preset).read_text())
    entries = config["model"]["init_args"]["encoders"]
    assert list(entries) == ["physio"]  # an overlay of the physiology encoder only
    entry = entries["physio"]
    assert entry["class_path"].endswith("PhysioCNN")
    encoder = PhysioCNN(**entry["init_args"])
    uses_features = bool(entry["init_args"].get("feature_mlp"))
    assert uses_features == bool(config.get("data", {}).get("init_args", {}).get("physio_features"))
    x = torch.randn(2, 3, 1024)
    y = encoder(x, **(_side(2) if uses_features else {}))
    y.sum().backward()
    assert all(p.grad is not None for p in encoder.parameters())
