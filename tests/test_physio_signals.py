"""The physiological signal checks, the resampler and the Python-2 pickle reader shared by DEAP and WESAD."""

import pickle

import numpy as np
import pytest

from multimodal_fer.errors import DataError
from multimodal_fer.media.pickles import load_legacy_pickle
from multimodal_fer.media.signals import (
    CLIPPED,
    FLAT,
    NON_FINITE,
    TRUNCATED,
    WRONG_RATE,
    SignalQuality,
    length_fault,
    rate_ratio,
    resample_signal,
    whole_samples,
    window_fault,
    window_slice,
)

from data.python2_pickle import python2_pickle_bytes

QUALITY = SignalQuality(clip_limits={"ecg": (-1.5, 1.5)}, max_clipped_share=0.01)


def test_window_checks_name_the_fault_and_the_channel():
    t = np.arange(700) / 700
    pulse = np.sin(2 * np.pi * 1.2 * t)
    assert window_fault("ecg", pulse, QUALITY) is None
    nan = pulse.copy()
    nan[10:13] = np.nan
    fault = window_fault("ecg", nan, QUALITY)
    assert fault.reason == NON_FINITE and fault.detail == "ecg: 3 of 700 samples are NaN or infinite"
    assert window_fault("eda", np.full(700, 4.2), QUALITY).reason == FLAT
    assert window_fault("eda", np.zeros(700), QUALITY).reason == FLAT  # a disconnected lead reading zero
    assert window_fault("temp", 33.0 + 1e-3 * t, QUALITY) is None  # slow, but not flat
    clipped = np.clip(2.0 * pulse, -1.5, 1.5)
    fault = window_fault("ecg", clipped, QUALITY)
    assert fault.reason == CLIPPED and "at or beyond the limits [-1.5, 1.5]" in fault.detail
    assert window_fault("rsp", clipped, QUALITY) is None  # no limits declared for it: not judged
    few = pulse.copy()
    few[:7] = 1.5  # 1 % of the window: at the threshold, not above it
    assert window_fault("ecg", few, QUALITY) is None
    few[7] = 1.5
    assert window_fault("ecg", few, QUALITY).reason == CLIPPED
    assert window_fault("ecg", np.zeros(0), QUALITY).reason == TRUNCATED


def test_length_checks_tell_a_wrong_rate_from_a_truncation():
    q = SignalQuality()
    assert length_fault("bvp", 6400, 64.0, 100.0, q) is None
    assert length_fault("bvp", 6395, 64.0, 100.0, q) is None  # within the slack of 0.1 % (6.4 samples)
    fault = length_fault("bvp", 12800, 64.0, 100.0, q)
    assert fault.reason == WRONG_RATE and "imply 128 Hz, not the declared 64 Hz" in fault.detail
    assert length_fault("bvp", 3200, 64.0, 100.0, q).reason == WRONG_RATE  # half as many: 32 Hz
    assert length_fault("eda", 134, 4.0, 100.0, q).reason == WRONG_RATE  # a third (within 1 %): 1.33 Hz
    assert length_fault("bvp", 5000, 64.0, 100.0, q) is None  # stops early: windows past its end fail
    where, fault = window_slice("bvp", 5000, 64.0, 70.0, 10.0)
    assert (where.start, where.stop) == (4480, 5120) and fault.reason == TRUNCATED
    assert "ends after 5000" in fault.detail
    assert window_slice("bvp", 5000, 64.0, 60.0, 10.0) == (slice(3840, 4480), None)


def test_whole_samples_and_rate_ratios():
    assert whole_samples(60.0, 700.0, "w") == 42000 and whole_samples(0.25, 4.0, "w") == 1
    with pytest.raises(DataError, match="choose a multiple of 0.25 s"):
        whole_samples(10.1, 4.0, "window_seconds")
    assert rate_ratio(700.0, 128.0) == (32, 175) and rate_ratio(4.0, 128.0) == (32, 1)
    with pytest.raises(DataError, match="positive"):
        rate_ratio(0.0, 128.0)
    with pytest.raises(ValueError, match="max_clipped_share"):
        SignalQuality(max_clipped_share=1.5)
    with pytest.raises(ValueError, match="low < high"):
        SignalQuality(clip_limits={"ecg": (1.0, -1.0)})


def test_resampling_keeps_frequency_level_and_edges():
    t = np.arange(7000) / 700
    wave = 3.0 + np.sin(2 * np.pi * 5.0 * t)  # 5 Hz on a level of 3
    down = resample_signal(wave, 700.0, 128.0)
    assert down.shape == (1280,)
    t128 = np.arange(1280) / 128
    assert np.allclose(down[32:-32], 3.0 + np.sin(2 * np.pi * 5.0 * t128)[32:-32], atol=0.02)
    assert np.allclose(down, 3.0 + np.sin(2 * np.pi * 5.0 * t128), atol=0.02)  # edges included: no droop to 0
    noise = np.sin(2 * np.pi * 200.0 * t)  # above 64 Hz: filtered out, not folded back in
    assert np.abs(resample_signal(noise, 700.0, 128.0)[32:-32]).max() < 0.05
    ramp = 1.0 + 0.01 * np.arange(40) / 4
    up = resample_signal(ramp, 4.0, 128.0)
    assert up.shape == (1280,) and np.allclose(up, 1.0 + 0.01 * np.arange(1280) / 128, atol=1e-6)
    same = resample_signal(ramp, 128.0, 128.0)
    assert np.array_equal(same, ramp) and same is not ramp


def test_python2_pickles_are_read_with_latin1_and_only_numpy_names(tmp_path):
    content = {"data": np.arange(6.0).reshape(1, 2, 3), "labels": np.array([[7.0, 2.0, 5.0, 9.0]]), "subject": "S2"}
    raw = python2_pickle_bytes(content)
    with pytest.raises(UnicodeDecodeError):
        pickle.loads(raw)  # Python 3's default (ASCII) cannot read Python-2 array buffers: latin-1 is needed
    path = tmp_path / "s01.dat"
    path.write_bytes(raw)
    read = load_legacy_pickle(path)
    assert (
        read["subject"] == "S2" and np.array_equal(read["data"], content["data"]) and read["data"].dtype == np.float64
    )
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps(print, protocol=2))
    with pytest.raises(DataError, match=r"asks for __builtin__\.print.*refused"):
        load_legacy_pickle(evil)
    cut = tmp_path / "cut.dat"
    cut.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match="not a readable pickle"):
        load_legacy_pickle(cut)
    (tmp_path / "empty.dat").write_bytes(b"")
    with pytest.raises(DataError, match="empty"):
        load_legacy_pickle(tmp_path / "empty.dat")
