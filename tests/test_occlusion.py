import numpy as np
import pytest

from multimodal_fer.errors import DataError
from multimodal_fer.occlusion import OCCLUSION_TYPES, FaceLandmarks, canonical_landmarks, occlude

SIZE = 112


def _face(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)


def _disc(center, radius=4):
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    return (xx - center[0]) ** 2 + (yy - center[1]) ** 2 <= radius**2


@pytest.mark.parametrize("kind", OCCLUSION_TYPES)
def test_shapes_dtypes_and_untouched_pixels(kind):
    face = _face()
    for seed in range(20):
        out, mask = occlude(face, kind, np.random.default_rng(seed))
        assert out.dtype == np.uint8 and out.shape == face.shape
        assert mask.dtype == bool and mask.shape == face.shape[:2]
        assert np.array_equal(out[~mask], face[~mask])
        assert 0.005 < mask.mean() < 0.7, (kind, seed, mask.mean())


@pytest.mark.parametrize("kind", OCCLUSION_TYPES)
def test_deterministic(kind):
    face = _face(1)
    a = occlude(face, kind, np.random.default_rng(7))
    b = occlude(face, kind, np.random.default_rng(7))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    c = occlude(face, kind, np.random.default_rng(8))
    assert not np.array_equal(a[1], c[1]) or not np.array_equal(a[0], c[0])


def test_input_not_modified():
    face = _face()
    copy = face.copy()
    occlude(face, "medical_mask", np.random.default_rng(0))
    assert np.array_equal(face, copy)


def test_sunglasses_cover_eyes_and_mask_covers_mouth_not_eyes():
    lm = canonical_landmarks(SIZE)
    face = _face()
    for seed in range(20):
        _, glasses = occlude(face, "sunglasses", np.random.default_rng(seed), lm)
        assert glasses[_disc(lm.left_eye)].mean() > 0.9 and glasses[_disc(lm.right_eye)].mean() > 0.9
        assert not glasses[_disc(lm.mouth_center)].any()
        _, medical = occlude(face, "medical_mask", np.random.default_rng(seed), lm)
        assert medical[_disc(lm.mouth_center)].all()
        assert not medical[_disc(lm.left_eye)].any() and not medical[_disc(lm.right_eye)].any()


def test_scarf_covers_lower_face_and_hair_upper_face():
    lm = canonical_landmarks(SIZE)
    face = _face()
    for seed in range(20):
        _, scarf = occlude(face, "scarf", np.random.default_rng(seed), lm)
        assert scarf[_disc(lm.chin, 2)].all() and not scarf[_disc(lm.left_eye)].any()
        _, hair = occlude(face, "hair", np.random.default_rng(seed), lm)
        upper = hair[: int(lm.left_eye[1])].mean()
        lower = hair[int(lm.mouth_center[1]) :].mean()
        assert upper > 0.2 and lower < 0.05


def test_hand_is_skin_coloured_and_near_face():
    lm = canonical_landmarks(SIZE)
    face = np.zeros((SIZE, SIZE, 3), np.uint8)
    for seed in range(10):
        out, mask = occlude(face, "hand", np.random.default_rng(seed), lm)
        colour = out[mask].mean(axis=0)
        assert colour[0] >= colour[2]  # skin: red over blue
        face_box = mask[int(lm.left_eye[1]) - 10 : int(lm.chin[1]), 20:92]
        assert face_box.any()


def test_landmarks_follow_the_face():
    lm = FaceLandmarks.from_dict(
        {
            "left_eye": (60, 30),
            "right_eye": (30, 30),
            "nose_tip": (45, 45),
            "mouth_center": (45, 58),
            "chin": (45, 72),
            "extra": (0, 0),
        }
    )
    _, mask = occlude(_face(), "sunglasses", np.random.default_rng(0), lm)
    assert mask[_disc(lm.left_eye)].mean() > 0.9
    assert not mask[_disc(canonical_landmarks(SIZE).mouth_center)].any()


def test_errors():
    rng = np.random.default_rng(0)
    with pytest.raises(DataError, match="valid kinds"):
        occlude(_face(), "balaclava", rng)
    with pytest.raises(DataError, match="uint8"):
        occlude(_face().astype(np.float32), "hand", rng)
    with pytest.raises(DataError, match=r"\(H, W, 3\)"):
        occlude(_face()[..., 0], "hand", rng)
    with pytest.raises(DataError, match="missing"):
        FaceLandmarks.from_dict({"left_eye": (1, 2)})


def test_non_square_and_small_images():
    face = np.zeros((64, 48, 3), np.uint8)
    for kind in OCCLUSION_TYPES:
        out, mask = occlude(face, kind, np.random.default_rng(3))
        assert mask.shape == (64, 48) and out.shape == (64, 48, 3)
