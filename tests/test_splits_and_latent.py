import numpy as np
import pytest

from multimodal_fer.datamodules.splits import subject_split
from multimodal_fer.datasets.synthaffect.labels import EXPRESSIONS_8, SYNTHAFFECT_AUS
from multimodal_fer.datasets.synthaffect.latent import (
    AU_ACTIVE_THRESHOLD,
    CIRCUMPLEX,
    PROTOTYPE_AUS,
    AffectSettings,
    sample_affect,
)
from multimodal_fer.types import LabelSpace, validate_modalities


def test_subject_split_is_disjoint_complete_and_deterministic():
    subjects = np.repeat(np.arange(20), 5)
    splits = subject_split(subjects, val_subjects=3, test_subjects=4, seed=0)
    sets = {name: set(subjects[idx]) for name, idx in splits.items()}
    assert len(sets["val"]) == 3 and len(sets["test"]) == 4 and len(sets["train"]) == 13
    assert not (sets["val"] & sets["test"]) and not (sets["train"] & (sets["val"] | sets["test"]))
    assert sum(idx.size for idx in splits.values()) == subjects.size
    again = subject_split(subjects, 3, 4, seed=0)
    assert all(np.array_equal(splits[k], again[k]) for k in splits)
    other = subject_split(subjects, 3, 4, seed=1)
    assert not np.array_equal(splits["test"], other["test"])


def test_subject_split_refuses_too_few_subjects():
    with pytest.raises(ValueError, match="leave one for training"):
        subject_split(np.arange(5), 2, 3, 0)


def test_affect_latents_follow_prototypes_and_circumplex():
    rng = np.random.default_rng(0)
    latents = [sample_affect(rng) for _ in range(4000)]
    expressions = np.array([lat.expression for lat in latents])
    assert set(expressions) == set(range(8))
    au = np.stack([lat.au_active for lat in latents])
    for k, name in enumerate(EXPRESSIONS_8):
        rows = au[expressions == k]
        for column, number in enumerate(SYNTHAFFECT_AUS):
            rate = rows[:, column].mean()
            if number in PROTOTYPE_AUS[name]:
                assert rate > 0.5, (name, number, rate)
            else:
                assert rate < 0.1, (name, number, rate)
        va = np.array([[lat.valence, lat.arousal] for lat in latents])[expressions == k].mean(0)
        target_v, target_a = CIRCUMPLEX[name]
        assert np.sign(np.round(va[0], 1)) == np.sign(np.round(target_v * 0.8, 1))
        assert abs(va[1] - target_a * 0.75) < 0.25
    # AUs are not a fixed function of the class: the same class gives different AU sets.
    happy = au[expressions == 1]
    assert len({tuple(row) for row in happy}) > 3
    for lat in latents[:200]:
        assert np.array_equal(lat.au_active, (lat.au_intensity >= AU_ACTIVE_THRESHOLD).astype(np.float32))
        assert -1 <= lat.valence <= 1 and -1 <= lat.arousal <= 1


def test_affect_is_deterministic_and_neutral_has_no_intensity():
    a = sample_affect(np.random.default_rng([3, 1, 7]))
    b = sample_affect(np.random.default_rng([3, 1, 7]))
    assert a.expression == b.expression and np.array_equal(a.au_intensity, b.au_intensity)
    neutral = [sample_affect(np.random.default_rng(i), AffectSettings(neutral_fraction=1.0)) for i in range(20)]
    assert all(lat.expression == 0 and lat.intensity == 0.0 for lat in neutral)


def test_validate_modalities_orders_and_refuses_unknown():
    assert validate_modalities(["physio", "face"]) == ("face", "physio")
    with pytest.raises(ValueError, match="Unknown modality 'video'.*Valid modalities"):
        validate_modalities(["face", "video"])
    with pytest.raises(ValueError, match="empty"):
        validate_modalities([])


def test_label_space_checks_dimensions():
    with pytest.raises(ValueError, match="prefix"):
        LabelSpace(dimensions=("arousal",))
    assert LabelSpace(("a", "b"), (1, 2, 4), ("valence", "arousal")).num_action_units == 3
