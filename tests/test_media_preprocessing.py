"""Face detection/alignment, audio reading/clipping and video decoding on real and generated media files."""

from __future__ import annotations

import fractions
import hashlib
import importlib
import json
import math
import pickle
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from multimodal_fer.errors import DataError, MissingDependencyError
from multimodal_fer.media import video
from multimodal_fer.occlusion.synthesis import LANDMARK_NAMES, canonical_landmarks
from multimodal_fer.preprocessing import audio, faces
from multimodal_fer.preprocessing.faces import (
    ALIGNMENT_TEMPLATE,
    FaceAligner,
    FaceDetection,
    HaarCascadeDetector,
    MTCNNDetector,
    YuNetDetector,
    align_face,
    apply_alignment,
    crop_box,
    landmarks68_to_points5,
    make_detector,
    resize_aligned,
)


def _optional(module: str) -> object | None:
    try:
        return importlib.import_module(module)
    except ImportError:
        return None


# OpenCV, PyAV and soundfile are optional dependencies: the tests that need one are skipped without it.
cv2: Any = _optional("cv2")
needs_cv2 = pytest.mark.skipif(cv2 is None, reason="OpenCV (cv2) is not installed")
needs_av = pytest.mark.skipif(_optional("av") is None, reason="PyAV (av) is not installed")
needs_soundfile = pytest.mark.skipif(_optional("soundfile") is None, reason="soundfile is not installed")

#: MTCNN's face on skimage's astronaut photo: box (x, y, w, h) and the five points in faces.POINT_NAMES order.
ASTRONAUT_BOX = (181.1, 62.2, 86.7, 109.9)
ASTRONAUT_POINTS = np.array(
    [[246.76, 103.71], [205.01, 101.73], [224.67, 128.97], [245.27, 141.86], [201.72, 139.25]], dtype=np.float32
)

HAS_CASCADES = (
    hasattr(cv2, "CascadeClassifier")
    and (Path(getattr(getattr(cv2, "data", None), "haarcascades", "")) / HaarCascadeDetector.cascade_file).is_file()
)


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    skimage_data = pytest.importorskip("skimage.data")
    return skimage_data.astronaut()


@pytest.fixture(scope="module")
def mtcnn_aligner() -> FaceAligner:
    pytest.importorskip("facenet_pytorch")
    return FaceAligner(detector="mtcnn", size=112)


@pytest.fixture(scope="module")
def mtcnn(mtcnn_aligner: FaceAligner) -> MTCNNDetector:
    detector = mtcnn_aligner.detector
    assert isinstance(detector, MTCNNDetector)
    return detector


def _similarity_matrix(angle_deg: float, scale: float, shift: tuple[float, float]) -> np.ndarray:
    angle = math.radians(angle_deg)
    c, s = scale * math.cos(angle), scale * math.sin(angle)
    return np.array([[c, -s, shift[0]], [s, c, shift[1]]])


def _apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points.astype(np.float64) @ matrix[:, :2].T + matrix[:, 2]


def _iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    ax2, ay2, bx2, by2 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    w = max(0.0, min(ax2, bx2) - max(a[0], b[0]))
    h = max(0.0, min(ay2, by2) - max(a[1], b[1]))
    return w * h / (a[2] * a[3] + b[2] * b[3] - w * h)


# --------------------------------------------------------------------------------------------------------
# Template and geometry


def test_template_matches_canonical_landmarks() -> None:
    canonical = canonical_landmarks(1).as_array()
    np.testing.assert_allclose(ALIGNMENT_TEMPLATE[:3], canonical[:3])
    np.testing.assert_allclose(ALIGNMENT_TEMPLATE[3:].mean(axis=0), canonical[3])
    # Subject's left mouth corner is on the image right, 0.12 crop widths from the centre.
    np.testing.assert_allclose(ALIGNMENT_TEMPLATE[3] - ALIGNMENT_TEMPLATE[4], [0.24, 0.0])
    assert ALIGNMENT_TEMPLATE[0, 0] > ALIGNMENT_TEMPLATE[1, 0]
    assert not ALIGNMENT_TEMPLATE.flags.writeable


@needs_cv2
def test_align_face_maps_similarity_transformed_points_onto_template() -> None:
    size = 96
    target = ALIGNMENT_TEMPLATE * size
    to_image = _similarity_matrix(25.0, 2.3, (140.0, 60.0))
    points = _apply(to_image, target).astype(np.float32)
    image = np.zeros((400, 400, 3), dtype=np.uint8)
    x, y = np.round(points[0]).astype(int)
    image[y - 3 : y + 4, x - 3 : x + 4] = 255  # a bright dot on the subject's left eye

    out = align_face(image, points, size)

    assert out.image.shape == (size, size, 3) and out.image.dtype == np.uint8
    assert out.landmarks.shape == (5, 2) and out.landmarks.dtype == np.float32
    assert out.transform.shape == (2, 3) and out.transform.dtype == np.float64
    np.testing.assert_allclose(_apply(out.transform, points), target, atol=1e-3)
    expected = np.stack([target[0], target[1], target[2], target[3:].mean(axis=0), canonical_landmarks(size).chin])
    np.testing.assert_allclose(out.landmarks, expected, atol=1e-3)
    # The pixels moved the same way as the points: the dot is at the template's left eye.
    dot_y, dot_x = np.unravel_index(np.argmax(out.image[..., 0]), out.image.shape[:2])
    assert abs(dot_x - target[0, 0]) <= 2 and abs(dot_y - target[0, 1]) <= 2


@needs_cv2
def test_align_face_least_squares_on_noisy_points_stays_close() -> None:
    rng = np.random.default_rng(0)
    target = ALIGNMENT_TEMPLATE * 112
    points = _apply(_similarity_matrix(-10.0, 1.5, (30.0, 20.0)), target) + rng.normal(0.0, 0.5, (5, 2))
    out = align_face(np.zeros((300, 300, 3), np.uint8), points.astype(np.float32), 112)
    assert np.abs(_apply(out.transform, points) - target).max() < 1.5


@needs_cv2
def test_align_face_on_a_large_image_matches_the_small_one(astronaut: np.ndarray) -> None:
    # 4x larger: alignment shrinks by more than 2x and takes the area-averaging path.
    big = cv2.resize(astronaut, (2048, 2048), interpolation=cv2.INTER_CUBIC)
    small = align_face(astronaut, ASTRONAUT_POINTS, 112)
    large = align_face(big, ASTRONAUT_POINTS * 4 + 1.5, 112)
    np.testing.assert_allclose(large.landmarks, small.landmarks, atol=1e-3)
    assert np.abs(large.image.astype(int) - small.image.astype(int)).mean() < 4.0


@needs_cv2
def test_align_face_rejects_bad_points() -> None:
    image = np.zeros((50, 50, 3), np.uint8)
    with pytest.raises(DataError, match=r"\(5, 2\)"):
        align_face(image, np.zeros((4, 2)), 32)
    with pytest.raises(DataError, match="coincide"):
        align_face(image, np.full((5, 2), 10.0), 32)
    with pytest.raises(DataError, match="finite"):
        align_face(image, np.full((5, 2), np.nan), 32)


def test_landmarks68_to_points5_uses_the_subjects_left_and_right() -> None:
    points68 = np.zeros((68, 2))
    ring = np.array([[-4, 0], [-2, -2], [2, -2], [4, 0], [2, 2], [-2, 2]], dtype=np.float64)
    points68[36:42] = ring + (30, 40)  # image-left eye: the subject's right eye
    points68[42:48] = ring + (70, 42)
    points68[30] = (50, 60)
    points68[48] = (35, 80)  # image-left mouth corner: the subject's right
    points68[54] = (65, 81)
    five = landmarks68_to_points5(points68)
    assert five.dtype == np.float32
    np.testing.assert_allclose(five, [[70, 42], [30, 40], [50, 60], [65, 81], [35, 80]])
    with pytest.raises(DataError, match=r"\(68, 2\)"):
        landmarks68_to_points5(np.zeros((5, 2)))


@needs_cv2
def test_crop_box_replicates_the_border_where_it_leaves_the_image() -> None:
    yy, xx = np.mgrid[0:100, 0:100]
    image = np.stack([xx, yy, np.full_like(xx, 7)], axis=2).astype(np.uint8)
    out = crop_box(image, (-10, -10, 40, 40), size=40, margin=0.0)  # side 40: no resampling
    assert out.image.shape == (40, 40, 3)
    np.testing.assert_array_equal(out.image[:10, :10], np.broadcast_to(image[0, 0], (10, 10, 3)))
    np.testing.assert_array_equal(out.image[10:, 10:], image[:30, :30])
    np.testing.assert_array_equal(out.image[:10, 20], np.broadcast_to(image[0, 10], (10, 3)))  # rows repeat row 0
    np.testing.assert_allclose(_apply(out.transform, np.array([[0.0, 0.0], [29.0, 5.0]])), [[10, 10], [39, 15]])
    np.testing.assert_allclose(out.landmarks, canonical_landmarks(40).as_array())


@needs_cv2
def test_crop_box_square_side_margin_and_transform() -> None:
    image = np.zeros((200, 300, 3), np.uint8)
    image[50:150, 100:160] = 200  # a 60 x 100 "face"
    out = crop_box(image, (100, 50, 60, 100), size=50, margin=0.2)  # side 120 centred on pixels 100..159 × 50..149
    np.testing.assert_allclose(_apply(out.transform, np.array([[129.5, 99.5]])), [[24.5, 24.5]], atol=1e-9)
    np.testing.assert_allclose(out.transform[0, 0], 50 / 120)
    # The box fills 100/120 of the height, centred.
    rows = np.nonzero(out.image[:, 25, 0] > 100)[0]
    assert abs(rows.min() - 50 * 10 / 120) <= 1.5 and abs(rows.max() + 1 - 50 * 110 / 120) <= 1.5
    with pytest.raises(DataError, match="w, h > 0"):
        crop_box(image, (0, 0, 0, 10), 32)
    with pytest.raises(DataError, match="margin"):
        crop_box(image, (0, 0, 10, 10), 32, margin=-0.5)


@needs_cv2
@pytest.mark.parametrize("shape", [(48, 48), (48, 48, 1)])
def test_resize_aligned_replicates_grey_to_rgb(shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(1)
    grey = rng.integers(0, 256, shape, dtype=np.uint8)
    out = resize_aligned(grey, 112)
    assert out.image.shape == (112, 112, 3) and out.image.dtype == np.uint8
    np.testing.assert_array_equal(out.image[..., 0], out.image[..., 1])
    np.testing.assert_array_equal(out.image[..., 0], out.image[..., 2])
    expected = cv2.resize(grey.reshape(48, 48), (112, 112), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(out.image[..., 0], expected)
    np.testing.assert_allclose(out.landmarks, canonical_landmarks(112).as_array())
    np.testing.assert_allclose(
        _apply(out.transform, np.array([[-0.5, -0.5], [47.5, 47.5]])), [[-0.5, -0.5]] + [[111.5] * 2]
    )


@pytest.mark.parametrize(
    ("image", "match"),
    [
        (np.zeros((32, 32, 3), np.float32), r"uint8.*\(32, 32, 3\)"),
        (np.zeros((32, 32, 4), np.uint8), r"\(32, 32, 4\)"),
        (np.zeros((0, 32, 3), np.uint8), r"empty.*\(0, 32, 3\)"),
        (np.zeros((2, 32, 32, 3), np.uint8), r"\(2, 32, 32, 3\)"),
    ],
)
def test_bad_images_are_refused_with_their_shape(image: np.ndarray, match: str) -> None:
    aligner = FaceAligner(detector="mtcnn")
    with pytest.raises(DataError, match=match):
        aligner(image, box=(0, 0, 10, 10))
    with pytest.raises(DataError, match=match):
        aligner(image, aligned=True)


# --------------------------------------------------------------------------------------------------------
# FaceAligner


@needs_cv2
def test_face_aligner_given_paths_match_the_functions(astronaut: np.ndarray) -> None:
    aligner = FaceAligner(detector="mtcnn", size=64, margin=0.3)
    by_points = aligner(astronaut, points=ASTRONAUT_POINTS, box=(0, 0, 5, 5))  # points win over a box
    np.testing.assert_array_equal(by_points.image, align_face(astronaut, ASTRONAUT_POINTS, 64).image)
    by_box = aligner(astronaut, box=ASTRONAUT_BOX)
    np.testing.assert_array_equal(by_box.image, crop_box(astronaut, ASTRONAUT_BOX, 64, 0.3).image)
    by_crop = aligner(astronaut[60:180, 170:290], aligned=True)
    np.testing.assert_array_equal(by_crop.image, resize_aligned(astronaut[60:180, 170:290], 64).image)
    with pytest.raises(DataError, match="not both"):
        aligner(astronaut, box=ASTRONAUT_BOX, aligned=True)


@needs_cv2
def test_face_aligner_accepts_68_points(astronaut: np.ndarray) -> None:
    points68 = np.zeros((68, 2), np.float32)
    points68[36:42] = ASTRONAUT_POINTS[1]
    points68[42:48] = ASTRONAUT_POINTS[0]
    points68[30], points68[54], points68[48] = ASTRONAUT_POINTS[2], ASTRONAUT_POINTS[3], ASTRONAUT_POINTS[4]
    aligner = FaceAligner(detector="mtcnn", size=64)
    np.testing.assert_array_equal(
        aligner(astronaut, points=points68).image, aligner(astronaut, points=ASTRONAUT_POINTS).image
    )


@needs_cv2
def test_mtcnn_finds_the_astronaut_and_aligns_her_eyes(
    astronaut: np.ndarray, mtcnn: MTCNNDetector, mtcnn_aligner: FaceAligner
) -> None:
    detections = mtcnn.detect(astronaut)
    assert len(detections) == 1
    face = detections[0]
    assert face.score > 0.99
    np.testing.assert_allclose(face.box, ASTRONAUT_BOX, atol=4.0)
    assert face.points is not None and face.points.dtype == np.float32
    # Subject's left eye is on the image right.
    assert face.points[0, 0] > face.points[1, 0] and face.points[3, 0] > face.points[4, 0]
    np.testing.assert_allclose(face.points, ASTRONAUT_POINTS, atol=2.0)

    aligner = mtcnn_aligner
    out = aligner(astronaut)
    template = ALIGNMENT_TEMPLATE * 112
    assert np.abs(out.landmarks[:2] - template[:2]).max() < 3.0  # the eyes are near the template
    assert out.landmarks[0, 0] > out.landmarks[1, 0]
    np.testing.assert_allclose(_apply(out.transform, face.points)[:2], out.landmarks[:2], atol=1e-3)
    assert [name for name in LANDMARK_NAMES] == ["left_eye", "right_eye", "nose_tip", "mouth_center", "chin"]
    # Deterministic, and the same after pickling (the network is rebuilt in the copy).
    copy = pickle.loads(pickle.dumps(aligner))
    np.testing.assert_array_equal(copy(astronaut).image, out.image)


@needs_cv2
def test_mtcnn_detector_pickles_without_its_network(astronaut: np.ndarray, mtcnn: MTCNNDetector) -> None:
    mtcnn.detect(astronaut[:64, :64])
    assert mtcnn._net is not None
    assert len(pickle.dumps(mtcnn)) < 2_000  # the weights are not sent to workers
    assert mtcnn.detect(np.zeros((10, 10, 3), np.uint8)) == []  # smaller than min_face_size


@needs_cv2
def test_no_face_on_a_flat_grey_image(mtcnn_aligner: FaceAligner) -> None:
    grey = np.full((160, 160, 3), 128, np.uint8)
    with pytest.raises(DataError, match=r"^no face found in the 160x160 image by the mtcnn detector"):
        mtcnn_aligner(grey)


@needs_cv2
def test_face_aligner_picks_the_largest_face_above_min_score() -> None:
    class FakeDetector:
        name = "fake"

        def detect(self, image: np.ndarray) -> list[FaceDetection]:
            return [
                FaceDetection((10, 10, 20, 20), 0.99, None),
                FaceDetection((50, 50, 40, 40), 0.95, None),
                FaceDetection((0, 0, 90, 90), 0.5, None),  # largest but below min_score
            ]

        def settings(self) -> dict[str, str]:
            return {"name": self.name}

    aligner = FaceAligner(detector="mtcnn", size=32, margin=0.0)
    aligner._detector = FakeDetector()
    image = np.random.default_rng(2).integers(0, 256, (100, 100, 3), dtype=np.uint8)
    np.testing.assert_array_equal(aligner(image).image, crop_box(image, (50, 50, 40, 40), 32, 0.0).image)
    aligner.min_score = 0.999
    with pytest.raises(DataError, match=r"^no face found.*best score 0\.990"):
        aligner(image)


@pytest.mark.skipif(not HAS_CASCADES, reason="this OpenCV (5.x main wheel) ships no CascadeClassifier / cascades")
def test_haar_finds_the_astronaut(astronaut: np.ndarray) -> None:
    detections = HaarCascadeDetector().detect(astronaut)
    assert detections and detections[0].points is None
    assert _iou(detections[0].box, ASTRONAUT_BOX) > 0.5
    out = FaceAligner(detector="haar", size=64)(astronaut)
    assert out.image.shape == (64, 64, 3)
    assert HaarCascadeDetector().detect(np.full((100, 100, 3), 128, np.uint8)) == []


def test_haar_without_cascade_support_names_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_cv2 = SimpleNamespace(__version__="5.1.0")
    monkeypatch.setattr(faces, "_cv2", lambda purpose: fake_cv2)
    with pytest.raises(MissingDependencyError, match=r"opencv-python-headless<5"):
        HaarCascadeDetector().detect(np.zeros((40, 40, 3), np.uint8))
    fake_cv2.CascadeClassifier = object
    fake_cv2.data = SimpleNamespace(haarcascades="/nonexistent")
    with pytest.raises(MissingDependencyError, match="cascade_path="):
        HaarCascadeDetector().detect(np.zeros((40, 40, 3), np.uint8))


def test_mtcnn_without_facenet_names_the_no_deps_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "facenet_pytorch", None)
    with pytest.raises(MissingDependencyError, match=r"pip install --no-deps facenet-pytorch==2\.6\.0.*torch<2\.3"):
        MTCNNDetector().detect(np.zeros((40, 40, 3), np.uint8))


def test_auto_without_any_detector_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "facenet_pytorch", None)
    monkeypatch.setattr(faces, "_cv2", lambda purpose: SimpleNamespace(__version__="5.1.0"))
    with pytest.raises(MissingDependencyError, match="facenet-pytorch"):
        make_detector("auto")


def test_yunet_missing_model_file(tmp_path: Path) -> None:
    missing = tmp_path / "face_detection_yunet_2023mar.onnx"
    with pytest.raises(DataError, match=r"does not exist.*model_path="):
        YuNetDetector(str(missing))
    with pytest.raises(DataError, match="does not exist"):
        FaceAligner(detector="yunet", yunet_model=str(missing))
    with pytest.raises(DataError, match="needs the path"):
        make_detector("yunet")
    with pytest.raises(DataError, match="Unknown face detector"):
        make_detector("retinaface")


@needs_cv2
def test_yunet_unreadable_model_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    with pytest.raises(DataError, match="cannot load the YuNet model"):
        YuNetDetector(str(broken)).detect(np.zeros((40, 40, 3), np.uint8))


def test_settings_record_what_changes_the_crops(tmp_path: Path) -> None:
    model = tmp_path / "yunet.onnx"
    model.write_bytes(b"pretend weights")
    settings = FaceAligner(detector="yunet", yunet_model=str(model), size=96).settings()
    assert json.loads(json.dumps(settings)) == settings
    assert settings["detector"] == "yunet"
    assert settings["detector_settings"]["model_sha256"] == hashlib.sha256(b"pretend weights").hexdigest()
    assert settings["size"] == 96
    mtcnn_settings = FaceAligner(detector="mtcnn").settings()
    assert mtcnn_settings["detector_settings"]["thresholds"] == [0.6, 0.7, 0.7]
    assert mtcnn_settings != FaceAligner(detector="mtcnn", margin=0.3).settings()


@needs_cv2
def test_apply_alignment_reproduces_align_face_and_checks_the_transform(astronaut: np.ndarray) -> None:
    out = align_face(astronaut, ASTRONAUT_POINTS, 80)
    np.testing.assert_array_equal(apply_alignment(astronaut, out.transform, 80), out.image)
    with pytest.raises(DataError, match=r"\(2, 3\)"):
        apply_alignment(astronaut, np.eye(3), 80)
    with pytest.raises(DataError, match="singular"):
        apply_alignment(astronaut, np.zeros((2, 3)), 80)


def test_face_detection_validates_points() -> None:
    with pytest.raises(DataError, match=r"\(5, 2\)"):
        FaceDetection((0, 0, 1, 1), 1.0, np.zeros((4, 2)))
    with pytest.raises(DataError, match="box"):
        FaceDetection((0, 0, 1), 1.0)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------------------
# Media writers for the tests


def write_mp4(
    path: Path,
    frames: np.ndarray | None,
    fps: int,
    sound: np.ndarray | None = None,
    sound_rate: int | None = None,
) -> None:
    """Write an MP4 with an MPEG-4 video track (uint8 (T, H, W, 3) RGB) and/or an AAC track (float (C, S))."""
    av = pytest.importorskip("av")
    with av.open(str(path), "w") as container:
        video_stream = audio_stream = None
        if frames is not None:
            video_stream = container.add_stream("mpeg4", rate=fps)
            video_stream.width, video_stream.height = frames.shape[2], frames.shape[1]
            video_stream.pix_fmt = "yuv420p"
            video_stream.bit_rate = 4_000_000
        if sound is not None:
            audio_stream = container.add_stream("aac", rate=sound_rate)
            audio_stream.layout = "stereo" if sound.shape[0] == 2 else "mono"
        if video_stream is not None:
            for frame in frames:
                container.mux(video_stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
            container.mux(video_stream.encode())
        if audio_stream is not None:
            for start in range(0, sound.shape[1], 1024):
                block = np.ascontiguousarray(sound[:, start : start + 1024], dtype=np.float32)
                frame = av.AudioFrame.from_ndarray(block, format="fltp", layout=audio_stream.layout.name)
                frame.sample_rate, frame.pts, frame.time_base = sound_rate, start, fractions.Fraction(1, sound_rate)
                container.mux(audio_stream.encode(frame))
            container.mux(audio_stream.encode())


def ramp_frames(count: int, height: int = 48, width: int = 64) -> np.ndarray:
    """Frames whose red level encodes their index (8 levels per frame)."""
    frames = np.zeros((count, height, width, 3), np.uint8)
    frames[..., 0] = (np.arange(count) * 8).astype(np.uint8)[:, None, None]
    frames[..., 1] = 100
    return frames


def tone(frequency: float, rate: int, seconds: float, amplitude: float = 0.5) -> np.ndarray:
    return amplitude * np.sin(2 * np.pi * frequency * np.arange(round(rate * seconds)) / rate)


def peak_frequency(signal: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(signal.astype(np.float64) * np.hanning(len(signal))))
    return float(np.fft.rfftfreq(len(signal), 1.0 / rate)[np.argmax(spectrum)])


# --------------------------------------------------------------------------------------------------------
# Audio


@needs_soundfile
def test_read_audio_wav_stereo_22khz(tmp_path: Path) -> None:
    soundfile = pytest.importorskip("soundfile")
    left, right = tone(440, 22050, 1.0, 0.5), tone(880, 22050, 1.0, 0.25)
    path = tmp_path / "speech.wav"
    soundfile.write(path, np.stack([left, right], axis=1), 22050, subtype="PCM_16")
    waveform, rate = audio.read_audio(path)
    assert rate == 22050 and waveform.dtype == np.float32 and waveform.shape == (2, 22050)
    np.testing.assert_allclose(waveform[0], left, atol=1.0 / 32768 + 1e-6)
    np.testing.assert_allclose(waveform[1], right, atol=1.0 / 32768 + 1e-6)


@needs_av
def test_read_audio_from_an_mp4_aac_track(tmp_path: Path) -> None:
    sound = np.stack([tone(440, 44100, 1.0, 0.5), tone(440, 44100, 1.0, 0.3)])
    path = tmp_path / "clip.mp4"
    write_mp4(path, ramp_frames(10), 10, sound, 44100)
    waveform, rate = audio.read_audio(path)
    assert rate == 44100 and waveform.dtype == np.float32 and waveform.shape[0] == 2
    assert 44100 <= waveform.shape[1] <= 44100 + 2048  # AAC adds encoder delay and padding
    middle = waveform[:, 4096:36864]
    np.testing.assert_allclose(np.sqrt((middle**2).mean(axis=1)), [0.5 / np.sqrt(2), 0.3 / np.sqrt(2)], rtol=0.05)
    assert abs(peak_frequency(middle[0], rate) - 440) < 3


@needs_av
def test_read_audio_refuses_a_video_without_sound(tmp_path: Path) -> None:
    path = tmp_path / "silent.mp4"
    write_mp4(path, ramp_frames(5), 10)
    with pytest.raises(DataError, match=r"silent\.mp4.*no audio stream"):
        audio.read_audio(path)


@needs_soundfile
@needs_av
def test_read_audio_refuses_broken_files(tmp_path: Path) -> None:
    soundfile = pytest.importorskip("soundfile")
    good = tmp_path / "good.wav"
    soundfile.write(good, tone(440, 16000, 1.0), 16000, subtype="PCM_16")
    data = good.read_bytes()
    truncated = tmp_path / "truncated.wav"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"truncated\.wav.*truncated"):
        audio.read_audio(truncated)
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(np.random.default_rng(3).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    with pytest.raises(DataError, match=r"garbage\.wav"):
        audio.read_audio(garbage)
    header_only = tmp_path / "header.wav"
    header_only.write_bytes(data[:20])
    with pytest.raises(DataError, match=r"header\.wav"):
        audio.read_audio(header_only)
    empty = tmp_path / "empty.m4a"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match=r"empty\.m4a.*empty"):
        audio.read_audio(empty)
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(300))
    with pytest.raises(DataError, match=r"corrupt\.mp4"):
        audio.read_audio(corrupt)
    with pytest.raises(DataError, match="does not exist"):
        audio.read_audio(tmp_path / "missing.flac")


def test_to_mono_clip_resamples_22khz_to_16khz_keeping_440hz() -> None:
    waveform = np.stack([tone(440, 22050, 2.0), tone(440, 22050, 2.0)]).astype(np.float32)
    clip, valid = audio.to_mono_clip(waveform, 22050, 16000, 1.5)
    assert clip.dtype == np.int16 and clip.shape == (24000,) and valid == 24000
    assert abs(peak_frequency(clip, 16000) - 440) < 2
    np.testing.assert_allclose(np.abs(clip[1000:-1000]).max(), 0.5 * 32767, rtol=0.01)


def test_to_mono_clip_pads_short_signals_and_counts_real_samples() -> None:
    clip, valid = audio.to_mono_clip(tone(440, 22050, 0.5).astype(np.float32), 22050, 16000, 1.0, "centre")
    assert clip.shape == (16000,) and valid == 8000
    assert np.all(clip[valid:] == 0) and np.abs(clip[:valid]).max() > 10000
    one_sample, valid = audio.to_mono_clip(np.full((1, 1), 0.5, np.float32), 16000, 16000, 0.01)
    assert valid == 1 and one_sample[0] == round(0.5 * 32767) and not one_sample[1:].any()


def test_to_mono_clip_windowed_resampling_equals_resampling_everything() -> None:
    torch = pytest.importorskip("torch")
    torchaudio_functional = pytest.importorskip("torchaudio.functional")
    rng = np.random.default_rng(4)
    waveform = (0.3 * rng.standard_normal((2, 44100 * 6))).astype(np.float32)
    for position in ("start", "centre"):
        clip, valid = audio.to_mono_clip(waveform, 44100, 16000, 1.0, position)
        full = torchaudio_functional.resample(torch.from_numpy(waveform.mean(axis=0)), 44100, 16000).numpy()
        start = 0 if position == "start" else (len(full) - 16000) // 2
        expected = np.round(np.clip(full[start : start + 16000], -1, 1) * 32767)
        assert valid == 16000
        assert np.abs(clip.astype(np.int64) - expected).max() <= 1


def test_to_mono_clip_clips_and_mixes() -> None:
    waveform = np.array([[2.0] * 100, [0.0] * 100], dtype=np.float32)  # mean 1.0
    clip, _ = audio.to_mono_clip(waveform, 8000, 8000, 100 / 8000)
    assert np.all(clip == 32767)
    clip, _ = audio.to_mono_clip(np.full((1, 100), -3.0, np.float32), 8000, 8000, 100 / 8000)
    assert np.all(clip == -32767)


def test_to_mono_clip_refuses_bad_input() -> None:
    waveform = np.zeros((1, 1000), np.float32)
    waveform[0, 10] = np.nan
    with pytest.raises(DataError, match="non-finite"):
        audio.to_mono_clip(waveform, 16000, 16000, 0.05)
    with pytest.raises(DataError, match="no samples"):
        audio.to_mono_clip(np.zeros((2, 0), np.float32), 16000, 16000, 0.05)
    with pytest.raises(DataError, match="position"):
        audio.to_mono_clip(np.zeros((1, 10), np.float32), 16000, 16000, 0.05, "end")
    with pytest.raises(DataError, match="target_rate"):
        audio.to_mono_clip(np.zeros((1, 10), np.float32), 16000, 0, 0.05)
    with pytest.raises(DataError, match="float"):
        audio.to_mono_clip(np.zeros((1, 10), np.int16), 16000, 16000, 0.05)


def test_audio_clip_settings() -> None:
    settings = audio.AudioClipSettings(target_rate=16000, seconds=2.5, position="centre")
    assert settings.length == 40000
    record = settings.as_dict()
    assert json.loads(json.dumps(record)) == record
    assert record["resampling"]["lowpass_filter_width"] == 6 and record["position"] == "centre"
    waveform = tone(300, 22050, 3.0).astype(np.float32)
    clip, valid = settings.clip(waveform, 22050)
    expected, expected_valid = audio.to_mono_clip(waveform, 22050, 16000, 2.5, "centre")
    np.testing.assert_array_equal(clip, expected)
    assert valid == expected_valid
    with pytest.raises(DataError, match="position"):
        audio.AudioClipSettings(position="middle")


# --------------------------------------------------------------------------------------------------------
# Video


@pytest.fixture(scope="module")
def ramp_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("video") / "ramp.mp4"
    write_mp4(path, ramp_frames(30), 15, np.stack([tone(440, 16000, 2.0)]), 16000)
    return path


@needs_av
def test_read_video_frames_native_rate(ramp_video: Path) -> None:
    clip = video.read_video_frames(ramp_video)
    assert clip.frames.shape == (30, 48, 64, 3) and clip.frames.dtype == np.uint8
    assert clip.native_fps == pytest.approx(15.0)
    np.testing.assert_allclose(clip.times, np.arange(30) / 15.0, atol=1e-6)
    np.testing.assert_array_equal(clip.indices, np.arange(30))
    red = clip.frames[:, 24, 32, 0].astype(int)
    assert np.abs(red - np.arange(30) * 8).max() <= 6  # the frames come back in order
    assert np.abs(clip.frames[:, 24, 32, 1].astype(int) - 100).max() <= 6


@needs_av
def test_read_video_frames_resampled(ramp_video: Path) -> None:
    slow = video.read_video_frames(ramp_video, fps=5)
    np.testing.assert_array_equal(slow.indices, np.arange(0, 30, 3))
    np.testing.assert_allclose(slow.times, np.arange(10) / 5.0, atol=1e-6)
    fast = video.read_video_frames(ramp_video, fps=30, max_frames=7)
    # Targets 0, 1/30, 2/30, ... fall on or halfway between 15-fps frames; ties go to the earlier frame.
    np.testing.assert_array_equal(fast.indices, [0, 0, 1, 1, 2, 2, 3])
    assert len(video.read_video_frames(ramp_video, fps=30)) == 60
    odd = video.read_video_frames(ramp_video, fps=4)  # targets 0, .25, .5, ... → frames 0, 3.75→4, 7.5→7, ...
    np.testing.assert_array_equal(odd.indices, [0, 4, 7, 11, 15, 19, 22, 26])


@needs_av
def test_read_video_frames_selection(ramp_video: Path) -> None:
    first = video.read_video_frames(ramp_video, max_frames=4)
    np.testing.assert_array_equal(first.indices, [0, 1, 2, 3])
    picked = video.read_video_frames(ramp_video, frame_indices=[20, 2, 2])
    np.testing.assert_array_equal(picked.indices, [20, 2, 2])
    np.testing.assert_allclose(picked.times, [20 / 15, 2 / 15, 2 / 15], atol=1e-6)
    np.testing.assert_array_equal(picked.frames[1], picked.frames[2])
    with pytest.raises(DataError, match="frame 40.*only 30 frames"):
        video.read_video_frames(ramp_video, frame_indices=[1, 40])
    with pytest.raises(DataError, match="not both"):
        video.read_video_frames(ramp_video, fps=5, frame_indices=[1])


@needs_av
def test_read_video_frames_refuses_broken_files(tmp_path: Path, ramp_video: Path) -> None:
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(np.random.default_rng(5).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    with pytest.raises(DataError, match=r"corrupt\.mp4"):
        video.read_video_frames(corrupt)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(ramp_video.read_bytes()[:400])
    with pytest.raises(DataError, match=r"cut\.mp4"):
        video.read_video_frames(cut)
    with pytest.raises(DataError, match="does not exist"):
        video.read_video_frames(tmp_path / "missing.mp4")
    sound_only = tmp_path / "sound.m4a"
    write_mp4(sound_only, None, 10, np.stack([tone(440, 16000, 0.5)]), 16000)
    with pytest.raises(DataError, match="no video stream"):
        video.read_video_frames(sound_only)


def test_sample_clip_and_middle_frame() -> None:
    np.testing.assert_array_equal(video.sample_clip(10, 5), [1, 3, 5, 7, 9])
    np.testing.assert_array_equal(video.sample_clip(3, 6), [0, 0, 1, 1, 2, 2])
    np.testing.assert_array_equal(video.sample_clip(np.zeros((7, 2, 2, 3)), 1), [3])
    assert video.middle_frame(7) == 3 and video.middle_frame(8) == 4
    with pytest.raises(DataError, match="no frames"):
        video.sample_clip(0, 4)
    with pytest.raises(DataError, match="num_frames"):
        video.sample_clip(5, 0)
