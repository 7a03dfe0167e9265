"""Face detection and alignment: RGB frames → fixed-size, landmark-aligned face crops.

Three detectors share one interface (``detect(image) -> list[FaceDetection]``): MTCNN (facenet-pytorch,
weights inside its wheel), OpenCV's frontal-face Haar cascade (boxes only; OpenCV 4.x wheels ship it, 5.x main
wheels do not) and YuNet (OpenCV's DNN detector on a user-supplied ONNX file). Nothing downloads at run time.

Conventions used throughout:

* Images are uint8 (H, W, 3) RGB; grey (H, W) or (H, W, 1) images are replicated to three channels.
* Points are (x, y) in pixels, with integer coordinates at pixel centres (OpenCV's convention). A box
  (x, y, w, h) spans the pixel area from its corner (x, y): integer boxes cover pixels x … x + w − 1.
* "Left" and "right" are the **subject's**: the left eye is on the image right of a frontal face.
* Detector points come in :data:`POINT_NAMES` order; aligned crops carry the occlusion landmarks of
  :data:`multimodal_fer.occlusion.synthesis.LANDMARK_NAMES`.
"""

from __future__ import annotations

import hashlib
import importlib
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

import numpy as np

from multimodal_fer._lazy import require
from multimodal_fer.errors import DataError, MissingDependencyError
from multimodal_fer.occlusion.synthesis import canonical_landmarks

#: Bump when the output of detection or alignment changes for the same settings (part of cache fingerprints).
FACES_VERSION = 1

#: Order of the five detector points (subject's left and right).
POINT_NAMES: tuple[str, ...] = ("left_eye", "right_eye", "nose_tip", "left_mouth_corner", "right_mouth_corner")

#: Detector names accepted by :func:`make_detector` and :class:`FaceAligner`.
DETECTOR_NAMES: tuple[str, ...] = ("mtcnn", "haar", "yunet", "auto")

#: Half the distance between the mouth corners in the alignment template, in crop widths.
_MOUTH_HALF_WIDTH = 0.12

#: MTCNN and YuNet list the image-left eye and mouth corner first (the subject's right); this reorders
#: their points into :data:`POINT_NAMES` order.
_IMAGE_LEFT_FIRST_TO_SUBJECT = np.array([1, 0, 2, 4, 3])


def _make_template() -> np.ndarray:
    canonical = canonical_landmarks(1).as_array()  # left_eye, right_eye, nose_tip, mouth_center, chin
    mouth = canonical[3]
    template = np.stack(
        [
            canonical[0],
            canonical[1],
            canonical[2],
            mouth + (_MOUTH_HALF_WIDTH, 0.0),  # subject's left corner: image right
            mouth - (_MOUTH_HALF_WIDTH, 0.0),
        ]
    )
    template.setflags(write=False)
    return template


#: float64 (5, 2): where :func:`align_face` puts the five points, in units of the crop side, in
#: :data:`POINT_NAMES` order. Built from :func:`~multimodal_fer.occlusion.synthesis.canonical_landmarks`, so
#: the eyes lie at 40 % height (left eye at x = 0.66, right eye at x = 0.34), the nose tip at (0.50, 0.57) and
#: the mouth corners at x = 0.50 ± 0.12 on the canonical mouth line (0.72): occluders placed by canonical
#: landmarks fit aligned crops.
ALIGNMENT_TEMPLATE: np.ndarray = _make_template()


# --------------------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True, eq=False)
class FaceDetection:
    """One detected face.

    Attributes:
        box: (x, y, w, h) in image pixels: top-left corner, width and height.
        score: detector confidence; higher is better. MTCNN and YuNet give a probability in [0, 1]; the Haar
            cascade gives its neighbour count (see :class:`HaarCascadeDetector`).
        points: float32 (5, 2) (x, y) in :data:`POINT_NAMES` order (left eye, right eye, nose tip, left mouth
            corner, right mouth corner; **subject's** left/right), or None when the detector gives no points.
    """

    box: tuple[float, float, float, float]
    score: float
    points: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        box = tuple(float(v) for v in self.box)
        if len(box) != 4 or not all(math.isfinite(v) for v in box):
            raise DataError(f"FaceDetection.box must be four finite numbers (x, y, w, h), got {self.box!r}.")
        object.__setattr__(self, "box", box)
        object.__setattr__(self, "score", float(self.score))
        if self.points is not None:
            object.__setattr__(self, "points", _check_points(self.points, allowed=(5,)))

    @property
    def area(self) -> float:
        """Box area in square pixels."""
        return max(self.box[2], 0.0) * max(self.box[3], 0.0)


@dataclass(frozen=True, eq=False)
class AlignedFace:
    """A face crop with the landmarks occluders are placed by.

    Attributes:
        image: uint8 (size, size, 3) RGB crop.
        landmarks: float32 (5, 2) (x, y) crop pixels in
            :data:`~multimodal_fer.occlusion.synthesis.LANDMARK_NAMES` order (left eye, right eye, nose tip,
            mouth centre, chin). Measured points where the crop was aligned by points (the chin is always
            canonical: no detector here finds it); canonical positions otherwise.
        transform: float64 (2, 3) affine map from source-image pixels to crop pixels
            (``crop = transform[:, :2] @ xy + transform[:, 2]``).
    """

    image: np.ndarray
    landmarks: np.ndarray
    transform: np.ndarray


# --------------------------------------------------------------------------------------------------------
# Input checks


def _as_rgb(image: np.ndarray, what: str = "image") -> np.ndarray:
    """Validate a uint8 image and return it as (H, W, 3) RGB (grey images replicated)."""
    if not isinstance(image, np.ndarray):
        raise DataError(f"The {what} must be a numpy array, got {type(image).__name__}.")
    if image.dtype != np.uint8:
        raise DataError(
            f"The {what} must be uint8 RGB (H, W, 3), got dtype {image.dtype} with shape {image.shape}; "
            "convert it with np.clip(x * 255, 0, 255).astype(np.uint8) for [0, 1] floats."
        )
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] != 3:
        raise DataError(
            f"The {what} must have shape (H, W, 3) RGB or (H, W) grey, got {image.shape}; "
            "drop an alpha channel with image[..., :3]."
        )
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise DataError(f"The {what} is empty: shape {image.shape}.")
    return image


def _check_points(points: np.ndarray, allowed: tuple[int, ...] = (5, 68)) -> np.ndarray:
    """Validate an (N, 2) point array with N in ``allowed``; return float32."""
    array = np.asarray(points, dtype=np.float32)
    if array.ndim != 2 or array.shape[1] != 2 or array.shape[0] not in allowed:
        names = " or ".join(f"({n}, 2)" for n in allowed)
        raise DataError(f"Face points must be an array of shape {names} as (x, y) pixels, got {array.shape}.")
    if not np.isfinite(array).all():
        raise DataError(f"Face points must be finite, got {np.count_nonzero(~np.isfinite(array))} non-finite values.")
    return array


def _check_size(size: int) -> int:
    if isinstance(size, bool) or not isinstance(size, int | np.integer) or size < 1:
        raise DataError(f"The crop size must be a positive integer number of pixels, got {size!r}.")
    return int(size)


def _cv2(purpose: str) -> ModuleType:
    return require("cv2", purpose)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --------------------------------------------------------------------------------------------------------
# Detectors


class FaceDetector(Protocol):
    """What :class:`FaceAligner` needs from a detector."""

    #: Short name recorded in cache settings ("mtcnn", "haar", "yunet").
    name: str

    def detect(self, image: np.ndarray) -> list[FaceDetection]:
        """Detect faces in a uint8 (H, W, 3) RGB image; highest score first."""
        ...

    def settings(self) -> dict[str, Any]:
        """JSON-ready settings that change the detections."""
        ...


def _import_facenet() -> ModuleType:
    try:
        return importlib.import_module("facenet_pytorch")
    except ImportError as error:
        raise MissingDependencyError(
            f"facenet_pytorch is needed for MTCNN face detection but cannot be imported ({error}). "
            "Install it with: pip install --no-deps facenet-pytorch==2.6.0 . Use --no-deps because its "
            "metadata pins torch<2.3 and numpy<2, which would downgrade this environment, although its MTCNN "
            "code runs on torch 2.11 (its other imports, torchvision, Pillow and requests, are already "
            "installed here). Or choose the OpenCV detector with detector='haar'."
        ) from error


class MTCNNDetector:
    """MTCNN (facenet-pytorch) with five points, weights from the facenet-pytorch wheel.

    The network is built on first use and is not pickled, so the detector can be sent to worker
    processes. It runs in inference mode with fixed thresholds and pyramid factor: the same image on the
    same device gives the same detections.

    Args:
        min_face_size: smallest face side in pixels the image pyramid looks for (>= 12).
        thresholds: score thresholds of the three stages (P-Net, R-Net, O-Net), each in [0, 1].
        device: torch device the network runs on ("cpu", "cuda", "cuda:1", ...).
    """

    name = "mtcnn"

    #: Pyramid scale step (facenet-pytorch's default).
    factor = 0.709

    def __init__(
        self, min_face_size: int = 20, thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7), device: str = "cpu"
    ) -> None:
        if min_face_size < 12:
            raise DataError(f"MTCNN min_face_size must be >= 12 pixels (its input window), got {min_face_size}.")
        thresholds = tuple(float(t) for t in thresholds)
        if len(thresholds) != 3 or not all(0.0 <= t <= 1.0 for t in thresholds):
            raise DataError(f"MTCNN thresholds must be three numbers in [0, 1], got {thresholds!r}.")
        self.min_face_size = int(min_face_size)
        self.thresholds = (thresholds[0], thresholds[1], thresholds[2])
        self.device = str(device)
        self._net: Any = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_net"] = None
        return state

    def _network(self) -> Any:
        if self._net is None:
            import torch

            facenet = _import_facenet()
            net = facenet.MTCNN(
                min_face_size=self.min_face_size,
                thresholds=list(self.thresholds),
                factor=self.factor,
                select_largest=False,
                keep_all=True,
                device=torch.device(self.device),
            )
            self._net = net.eval()
        return self._net

    def detect(self, image: np.ndarray) -> list[FaceDetection]:
        """Detect faces.

        Args:
            image: uint8 (H, W, 3) RGB (or (H, W) grey).

        Returns:
            Detections, highest score first, with points converted from MTCNN's image-left-first order
            (its first eye is the subject's right eye) to :data:`POINT_NAMES`.

        Raises:
            DataError: the image is not uint8 (H, W, 3) or (H, W).
            MissingDependencyError: facenet-pytorch is not installed.
        """
        image = _as_rgb(image)
        net = self._network()
        if min(image.shape[:2]) < self.min_face_size:  # the pyramid would be empty
            return []
        import torch

        with torch.inference_mode():
            boxes, probs, points = net.detect(np.ascontiguousarray(image), landmarks=True)
        if boxes is None:
            return []
        detections = []
        for box, prob, pts in zip(boxes, probs, points, strict=True):
            x1, y1, x2, y2 = (float(v) for v in box)
            ordered = np.asarray(pts, dtype=np.float32)[_IMAGE_LEFT_FIRST_TO_SUBJECT]
            detections.append(FaceDetection((x1, y1, x2 - x1, y2 - y1), float(prob), ordered))
        return sorted(detections, key=lambda d: -d.score)

    def settings(self) -> dict[str, Any]:
        """JSON-ready settings that change the detections (the device is left out: it should not)."""
        return {
            "name": self.name,
            "min_face_size": self.min_face_size,
            "thresholds": list(self.thresholds),
            "factor": self.factor,
        }


class HaarCascadeDetector:
    """OpenCV's frontal-face Haar cascade (``haarcascade_frontalface_default.xml``): boxes only.

    The cascade gives no probability; ``score`` is the number of raw detections OpenCV merged into the box
    (its neighbour count, >= ``min_neighbors``), a usable ranking but not in [0, 1]: any ``min_score`` <= 1
    of :class:`FaceAligner` keeps every Haar face. Points are None. The classifier is loaded on first use and
    not pickled.

    Needs ``cv2.CascadeClassifier``, which OpenCV 4.x wheels have together with the cascade files
    (``cv2.data.haarcascades``). OpenCV 5 moved both out of its main wheels: there, install
    ``opencv-python-headless<5`` or pass ``cascade_path`` with an OpenCV build that still has the class.

    Args:
        scale_factor: pyramid step (> 1).
        min_neighbors: raw detections needed to keep a box (>= 1).
        min_size: smallest face side in pixels.
        cascade_path: a cascade XML file; None takes ``haarcascade_frontalface_default.xml`` from
            ``cv2.data.haarcascades``.
    """

    name = "haar"

    #: The cascade file looked up in ``cv2.data.haarcascades`` when no ``cascade_path`` is given.
    cascade_file = "haarcascade_frontalface_default.xml"

    def __init__(
        self, scale_factor: float = 1.1, min_neighbors: int = 5, min_size: int = 20, cascade_path: str | None = None
    ) -> None:
        if scale_factor <= 1.0:
            raise DataError(f"Haar scale_factor must be > 1, got {scale_factor}.")
        if min_neighbors < 1:
            raise DataError(f"Haar min_neighbors must be >= 1, got {min_neighbors}.")
        if min_size < 1:
            raise DataError(f"Haar min_size must be >= 1 pixel, got {min_size}.")
        self.scale_factor = float(scale_factor)
        self.min_neighbors = int(min_neighbors)
        self.min_size = int(min_size)
        self.cascade_path = cascade_path
        self._cascade: Any = None
        self._sha: str | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_cascade"] = None
        return state

    def _cascade_file(self, cv2: ModuleType) -> Path:
        if self.cascade_path is not None:
            path = Path(self.cascade_path).expanduser()
        else:
            folder = getattr(getattr(cv2, "data", None), "haarcascades", "")
            path = Path(folder) / self.cascade_file
        if not path.is_file():
            raise MissingDependencyError(
                f"The Haar cascade file {str(path)!r} does not exist. OpenCV {cv2.__version__} does not ship it: "
                "OpenCV 4.x wheels do (pip install 'opencv-python-headless<5'); or pass cascade_path= the path of "
                f"{self.cascade_file}, or use detector='mtcnn'."
            )
        return path

    def _classifier(self) -> Any:
        if self._cascade is None:
            cv2 = _cv2("Haar-cascade face detection")
            if not hasattr(cv2, "CascadeClassifier"):
                raise MissingDependencyError(
                    f"OpenCV {cv2.__version__} has no CascadeClassifier: OpenCV 5 moved Haar cascades out of its "
                    "main wheels. Install an OpenCV 4.x wheel, which has both the class and the cascade files "
                    "(pip install 'opencv-python-headless<5'), or use detector='mtcnn'."
                )
            path = self._cascade_file(cv2)
            cascade = cv2.CascadeClassifier(str(path))
            if cascade.empty():
                raise DataError(f"OpenCV cannot read the Haar cascade {str(path)!r}; pass a valid cascade XML file.")
            self._cascade = cascade
        return self._cascade

    def detect(self, image: np.ndarray) -> list[FaceDetection]:
        """Detect frontal faces.

        Args:
            image: uint8 (H, W, 3) RGB (or (H, W) grey).

        Returns:
            Detections (points None), highest neighbour count first, larger box first among equal counts.

        Raises:
            DataError: the image is not uint8 (H, W, 3) or (H, W).
            MissingDependencyError: this OpenCV has no CascadeClassifier or no cascade file.
        """
        image = _as_rgb(image)
        cascade = self._classifier()
        cv2 = _cv2("Haar-cascade face detection")
        grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        rects, neighbours = cascade.detectMultiScale2(
            grey,
            scaleFactor=self.scale_factor,
            minNeighbors=self.min_neighbors,
            minSize=(self.min_size, self.min_size),
        )
        detections = [
            FaceDetection(tuple(float(v) for v in rect), float(count), None)
            for rect, count in zip(np.reshape(rects, (-1, 4)), np.reshape(neighbours, (-1,)), strict=True)
        ]
        return sorted(detections, key=lambda d: (-d.score, -d.area))

    def settings(self) -> dict[str, Any]:
        """JSON-ready settings that change the detections, with the cascade file's SHA-256."""
        if self._sha is None:
            self._sha = _sha256(self._cascade_file(_cv2("Haar-cascade face detection")))
        return {
            "name": self.name,
            "cascade_sha256": self._sha,
            "scale_factor": self.scale_factor,
            "min_neighbors": self.min_neighbors,
            "min_size": self.min_size,
        }


class YuNetDetector:
    """YuNet, OpenCV's DNN face detector (``cv2.FaceDetectorYN``), on an ONNX model file you supply.

    Nothing is downloaded: get ``face_detection_yunet_2023mar.onnx`` from the opencv_zoo repository
    (models/face_detection_yunet) yourself and pass its path. YuNet lists its points as OpenCV documents
    them, "right eye, left eye, nose tip, right mouth corner, left mouth corner" in the subject's terms, i.e.
    the image-left eye first; they are reordered to :data:`POINT_NAMES`. The network is loaded on first use
    and not pickled.

    Args:
        model_path: the YuNet ONNX file.
        score_threshold: detections scoring lower are dropped, in [0, 1].
        nms_threshold: IoU above which overlapping boxes are merged, in [0, 1].

    Raises:
        DataError: the model file does not exist or a threshold is outside [0, 1].
    """

    name = "yunet"

    def __init__(self, model_path: str, score_threshold: float = 0.6, nms_threshold: float = 0.3) -> None:
        path = Path(model_path).expanduser()
        if not path.is_file():
            raise DataError(
                f"The YuNet model file {str(path)!r} does not exist. Pass model_path= (or yunet_model= to "
                "FaceAligner) the path of a YuNet ONNX file such as face_detection_yunet_2023mar.onnx from the "
                "opencv_zoo repository (models/face_detection_yunet); nothing is downloaded at run time. "
                "Or use detector='mtcnn' or 'haar', which need no model file."
            )
        for label, value in (("score_threshold", score_threshold), ("nms_threshold", nms_threshold)):
            if not 0.0 <= value <= 1.0:
                raise DataError(f"YuNet {label} must be in [0, 1], got {value}.")
        self.model_path = str(path.resolve())
        self.score_threshold = float(score_threshold)
        self.nms_threshold = float(nms_threshold)
        self._sha: str | None = None
        self._net: Any = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_net"] = None
        return state

    def _network(self, width: int, height: int) -> Any:
        cv2 = _cv2("YuNet face detection")
        if self._net is None:
            try:
                self._net = cv2.FaceDetectorYN.create(
                    self.model_path, "", (width, height), self.score_threshold, self.nms_threshold, 5000
                )
            except cv2.error as error:
                raise DataError(
                    f"OpenCV cannot load the YuNet model {self.model_path!r} ({error}); pass a YuNet ONNX file "
                    "(face_detection_yunet_2023mar.onnx) from opencv_zoo."
                ) from error
        self._net.setInputSize((width, height))
        return self._net

    def detect(self, image: np.ndarray) -> list[FaceDetection]:
        """Detect faces.

        Args:
            image: uint8 (H, W, 3) RGB (or (H, W) grey).

        Returns:
            Detections, highest score first, with points in :data:`POINT_NAMES` order.

        Raises:
            DataError: the image is not uint8 (H, W, 3) or (H, W), or the model file cannot be loaded.
        """
        image = _as_rgb(image)
        cv2 = _cv2("YuNet face detection")
        height, width = image.shape[:2]
        net = self._network(width, height)
        _, faces = net.detect(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        if faces is None:
            return []
        detections = []
        for row in np.asarray(faces, dtype=np.float64).reshape(-1, 15):
            points = row[4:14].reshape(5, 2)[_IMAGE_LEFT_FIRST_TO_SUBJECT].astype(np.float32)
            detections.append(FaceDetection(tuple(row[:4]), float(row[14]), points))
        return sorted(detections, key=lambda d: -d.score)

    def settings(self) -> dict[str, Any]:
        """JSON-ready settings that change the detections, with the model file's SHA-256."""
        if self._sha is None:
            self._sha = _sha256(Path(self.model_path))
        return {
            "name": self.name,
            "model_sha256": self._sha,
            "score_threshold": self.score_threshold,
            "nms_threshold": self.nms_threshold,
        }


_warned_auto_fallback = False


def _facenet_available() -> bool:
    try:
        _import_facenet()
    except MissingDependencyError:
        return False
    return True


def make_detector(name: str, model_path: str | None = None) -> FaceDetector:
    """Build a detector by name, with its default settings.

    Args:
        name: "mtcnn", "haar", "yunet" or "auto" (MTCNN where facenet-pytorch imports, else the Haar cascade,
            with a warning the first time).
        model_path: the YuNet ONNX file (needed for "yunet", ignored otherwise).

    Returns:
        The detector.

    Raises:
        DataError: an unknown name, or "yunet" without an existing model file.
    """
    global _warned_auto_fallback
    if name == "auto":
        if _facenet_available():
            return MTCNNDetector()
        haar = HaarCascadeDetector()
        try:
            haar._classifier()
        except MissingDependencyError as error:
            raise MissingDependencyError(
                "detector='auto' needs facenet-pytorch (MTCNN) or an OpenCV with Haar cascades, and neither is "
                f"usable here ({error}). Install MTCNN with: pip install --no-deps facenet-pytorch==2.6.0"
            ) from error
        if not _warned_auto_fallback:
            warnings.warn(
                "facenet-pytorch is not installed, so detector='auto' falls back to OpenCV's Haar cascade (boxes "
                "only, no eye points: faces are cropped, not aligned). For MTCNN alignment: "
                "pip install --no-deps facenet-pytorch==2.6.0",
                stacklevel=2,
            )
            _warned_auto_fallback = True
        return haar
    if name == "mtcnn":
        return MTCNNDetector()
    if name == "haar":
        return HaarCascadeDetector()
    if name == "yunet":
        if model_path is None:
            raise DataError(
                "detector='yunet' needs the path of a YuNet ONNX file (model_path=, or yunet_model= for "
                "FaceAligner), e.g. face_detection_yunet_2023mar.onnx from opencv_zoo; nothing is downloaded."
            )
        return YuNetDetector(model_path)
    raise DataError(f"Unknown face detector {name!r}; choose one of {list(DETECTOR_NAMES)}.")


# --------------------------------------------------------------------------------------------------------
# Geometry


def landmarks68_to_points5(points68: np.ndarray) -> np.ndarray:
    """Reduce iBUG-300W 68-point landmarks to the five detector points.

    Points 36-41 outline the image-left eye (the subject's **right** eye) and 42-47 the subject's left
    eye; 30 is the nose tip, 48 the image-left mouth corner (subject's right) and 54 the subject's left.

    Args:
        points68: (68, 2) (x, y) pixels, 0-based iBUG order.

    Returns:
        float32 (5, 2) in :data:`POINT_NAMES` order: left-eye centre (mean of 42-47), right-eye centre (mean
        of 36-41), nose tip (30), left mouth corner (54), right mouth corner (48).

    Raises:
        DataError: the array is not (68, 2) or holds non-finite values.
    """
    points = _check_points(points68, allowed=(68,)).astype(np.float64)
    five = np.stack(
        [points[42:48].mean(axis=0), points[36:42].mean(axis=0), points[30], points[54], points[48]],
    )
    return five.astype(np.float32)


def _similarity(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation; no reflection) source → target.

    Solves ``min ||z * p + t - q||²`` over complex ``z`` and ``t`` with points as complex numbers.

    Returns:
        float64 (2, 3) affine matrix.
    """
    p = source.astype(np.float64)
    q = target.astype(np.float64)
    p_mean, q_mean = p.mean(axis=0), q.mean(axis=0)
    pc, qc = p - p_mean, q - q_mean
    norm = float((pc**2).sum())
    if norm <= 1e-12:
        raise DataError("The face points all coincide; a similarity transform needs at least two distinct points.")
    a = float((pc * qc).sum()) / norm
    b = float((pc[:, 0] * qc[:, 1] - pc[:, 1] * qc[:, 0]).sum()) / norm
    linear = np.array([[a, -b], [b, a]])
    return np.concatenate([linear, (q_mean - linear @ p_mean)[:, None]], axis=1)


def _apply(transform: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points.astype(np.float64) @ transform[:, :2].T + transform[:, 2]


def _compose(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """The (2, 3) affine map ``outer ∘ inner``."""
    linear = outer[:, :2] @ inner[:, :2]
    return np.concatenate([linear, (outer[:, :2] @ inner[:, 2] + outer[:, 2])[:, None]], axis=1)


def _invert(transform: np.ndarray) -> np.ndarray:
    linear = np.linalg.inv(transform[:, :2])
    return np.concatenate([linear, (-linear @ transform[:, 2])[:, None]], axis=1)


def _take_region(image: np.ndarray, x0: int, y0: int, width: int, height: int) -> np.ndarray:
    """Pixels [y0, y0 + height) × [x0, x0 + width), replicating the border where the region leaves the image."""
    rows = np.clip(np.arange(y0, y0 + height), 0, image.shape[0] - 1)
    cols = np.clip(np.arange(x0, x0 + width), 0, image.shape[1] - 1)
    if rows[0] == y0 and rows[-1] == y0 + height - 1 and cols[0] == x0 and cols[-1] == x0 + width - 1:
        return image[y0 : y0 + height, x0 : x0 + width]
    return image[rows[:, None], cols[None, :]]


def _resize_matrix(src_w: int, src_h: int, dst_w: int, dst_h: int, x0: float = 0.0, y0: float = 0.0) -> np.ndarray:
    """Source → destination pixel map of ``cv2.resize`` of the region starting at (x0, y0) (pixel centres)."""
    sx, sy = dst_w / src_w, dst_h / src_h
    return np.array([[sx, 0.0, (0.5 - x0) * sx - 0.5], [0.0, sy, (0.5 - y0) * sy - 0.5]])


def _resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize with area averaging when shrinking (no aliasing) and bilinear interpolation when enlarging."""
    if image.shape[1] == width and image.shape[0] == height:
        return np.ascontiguousarray(image)
    cv2 = _cv2("face cropping")
    shrinking = width * height < image.shape[0] * image.shape[1]
    method = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(np.ascontiguousarray(image), (width, height), interpolation=method)


def _chin(size: int) -> tuple[float, float]:
    return canonical_landmarks(size).chin


def apply_alignment(image: np.ndarray, transform: np.ndarray, size: int) -> np.ndarray:
    """Warp an image by a similarity transform into a square crop, as :func:`align_face` does.

    Use it to cut the other frames of a video with the transform found on one frame. Bilinear with the
    border replicated; when the transform shrinks by more than 2×, the region the crop sees is first reduced
    by area averaging, so that the crop is not aliased.

    Args:
        image: uint8 (H, W, 3) RGB (or (H, W) grey).
        transform: float (2, 3) similarity (rotation, uniform scale, translation) from image to crop pixels,
            e.g. :attr:`AlignedFace.transform`.
        size: crop side in pixels.

    Returns:
        uint8 (size, size, 3) crop.

    Raises:
        DataError: wrong image dtype/shape, a transform that is not a finite invertible (2, 3) matrix, or a bad
            size.
    """
    image = _as_rgb(image)
    size = _check_size(size)
    transform = np.asarray(transform, dtype=np.float64)
    if transform.shape != (2, 3) or not np.isfinite(transform).all():
        raise DataError(f"The transform must be a finite (2, 3) affine matrix, got shape {transform.shape}.")
    scale = math.sqrt(abs(float(np.linalg.det(transform[:, :2]))))
    if scale <= 1e-12:
        raise DataError("The transform is singular (zero scale); it cannot map an image to a crop.")
    cv2 = _cv2("face alignment")
    source, warp = image, transform
    if scale < 0.5:
        # Cut the source region the crop sees (plus a margin), shrink it by `scale` with area averaging, then
        # warp the small region: the remaining warp is (nearly) a pure rotation.
        corners = _apply(_invert(transform), np.array([[0, 0], [size, 0], [0, size], [size, size]]) - 0.5)
        x0, y0 = np.floor(corners.min(axis=0)).astype(int) - 2
        x1, y1 = np.ceil(corners.max(axis=0)).astype(int) + 3
        region = _take_region(image, int(x0), int(y0), int(x1 - x0), int(y1 - y0))
        width = max(1, round(region.shape[1] * scale))
        height = max(1, round(region.shape[0] * scale))
        source = _resize(region, width, height)
        shrink = _resize_matrix(region.shape[1], region.shape[0], width, height, float(x0), float(y0))
        warp = _compose(transform, _invert(shrink))
    return cv2.warpAffine(
        np.ascontiguousarray(source),
        warp,
        (size, size),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )


def align_face(image: np.ndarray, points5: np.ndarray, size: int) -> AlignedFace:
    """Warp a face so that its five points land on :data:`ALIGNMENT_TEMPLATE` × ``size``.

    The least-squares similarity transform (rotation, uniform scale, translation; no reflection) maps the
    points onto the template; the image is warped by :func:`apply_alignment` (bilinear, border replicated,
    area-averaged first when shrinking by more than 2×).

    Args:
        image: uint8 (H, W, 3) RGB (or (H, W) grey).
        points5: (5, 2) (x, y) pixels in :data:`POINT_NAMES` order (subject's left eye first).
        size: crop side in pixels.

    Returns:
        The crop; its landmarks are the transformed eyes and nose tip, the mean of the transformed mouth
        corners and the canonical chin.

    Raises:
        DataError: wrong image dtype/shape, points not (5, 2) or coinciding, or a bad size.
    """
    image = _as_rgb(image)
    points = _check_points(points5, allowed=(5,))
    size = _check_size(size)
    transform = _similarity(points, ALIGNMENT_TEMPLATE * size)
    crop = apply_alignment(image, transform, size)
    moved = _apply(transform, points)
    landmarks = np.stack([moved[0], moved[1], moved[2], moved[3:5].mean(axis=0), np.asarray(_chin(size))])
    return AlignedFace(crop, landmarks.astype(np.float32), transform)


def _canonical_face(size: int) -> np.ndarray:
    return canonical_landmarks(size).as_array().astype(np.float32)


def crop_box(
    image: np.ndarray, box: tuple[float, float, float, float] | np.ndarray, size: int, margin: float = 0.2
) -> AlignedFace:
    """Crop a square around a face box and resize it.

    The square is centred on the box (on pixel coordinate ``x + (w − 1) / 2`` horizontally: the box covers
    pixels x … x + w − 1), with side ``max(w, h) × (1 + margin)`` rounded to whole pixels; where it leaves
    the image, the border pixels are replicated. It is shrunk with area averaging (enlarged
    bilinearly).

    Args:
        image: uint8 (H, W, 3) RGB (or (H, W) grey).
        box: (x, y, w, h) face box in pixels, w and h > 0.
        size: crop side in pixels.
        margin: extra context around the box as a fraction of its longer side (>= 0).

    Returns:
        The crop with canonical landmarks (the box gives no points).

    Raises:
        DataError: wrong image dtype/shape, a box that is not four finite numbers with positive w and h, a
            negative margin or a bad size.
    """
    image = _as_rgb(image)
    size = _check_size(size)
    values = np.asarray(box, dtype=np.float64).reshape(-1)
    if values.shape != (4,) or not np.isfinite(values).all() or values[2] <= 0 or values[3] <= 0:
        raise DataError(f"A face box must be four finite numbers (x, y, w, h) with w, h > 0, got {box!r}.")
    if not math.isfinite(margin) or margin < 0:
        raise DataError(f"The crop margin must be a finite fraction >= 0, got {margin}.")
    x, y, w, h = values
    side = max(1, round(max(w, h) * (1.0 + margin)))
    x0 = math.floor(x + w / 2.0 - side / 2.0 + 0.5)
    y0 = math.floor(y + h / 2.0 - side / 2.0 + 0.5)
    region = _take_region(image, x0, y0, side, side)
    crop = _resize(region, size, size)
    transform = _resize_matrix(side, side, size, size, float(x0), float(y0))
    return AlignedFace(crop, _canonical_face(size), transform)


def resize_aligned(image: np.ndarray, size: int) -> AlignedFace:
    """Resize a crop a data set ships already aligned (FER2013, RAF-DB aligned, ...).

    Args:
        image: uint8 (H, W, 3) RGB, (H, W) or (H, W, 1) grey (replicated to three channels). A non-square
            crop is stretched to a square.
        size: output side in pixels.

    Returns:
        The crop with canonical landmarks; ``transform`` is the resize.

    Raises:
        DataError: wrong dtype or shape, or a bad size.
    """
    image = _as_rgb(image)
    size = _check_size(size)
    height, width = image.shape[:2]
    crop = _resize(image, size, size)
    return AlignedFace(crop, _canonical_face(size), _resize_matrix(width, height, size, size))


# --------------------------------------------------------------------------------------------------------
# The aligner used by cache builders


class FaceAligner:
    """Detect (when needed) and align one face per image into a square crop; picklable.

    The input decides the path (see :meth:`__call__`): data sets with aligned crops are resized, given
    points are aligned to the template, a given box is cropped, and otherwise the detector finds the face.

    Args:
        detector: "auto" (MTCNN if facenet-pytorch imports, else Haar), "mtcnn", "haar" or "yunet".
        size: crop side in pixels.
        margin: context around a box for box crops (fraction of the box's longer side).
        yunet_model: the YuNet ONNX file, needed for ``detector="yunet"``.
        min_score: detections scoring lower are ignored. MTCNN and YuNet scores are probabilities; the Haar
            score is a neighbour count (>= 1), so any value <= 1 keeps every Haar face.

    Raises:
        DataError: an unknown detector, a bad size, margin or min_score, or YuNet without an existing model.
    """

    def __init__(
        self,
        detector: str = "auto",
        size: int = 112,
        margin: float = 0.2,
        yunet_model: str | None = None,
        min_score: float = 0.9,
    ) -> None:
        if detector not in DETECTOR_NAMES:
            raise DataError(f"Unknown face detector {detector!r}; choose one of {list(DETECTOR_NAMES)}.")
        self.size = _check_size(size)
        if not math.isfinite(margin) or margin < 0:
            raise DataError(f"The crop margin must be a finite fraction >= 0, got {margin}.")
        if not math.isfinite(min_score) or min_score < 0:
            raise DataError(f"min_score must be a finite number >= 0, got {min_score}.")
        self.detector_name = detector
        self.margin = float(margin)
        self.min_score = float(min_score)
        self.yunet_model = yunet_model
        # YuNet checks its file now; the others are built on first detection (cheap to pickle either way).
        self._detector: FaceDetector | None = make_detector(detector, yunet_model) if detector == "yunet" else None

    @property
    def detector(self) -> FaceDetector:
        """The detector, built on first use ("auto" is resolved here)."""
        if self._detector is None:
            self._detector = make_detector(self.detector_name, self.yunet_model)
        return self._detector

    def __call__(
        self,
        image: np.ndarray,
        box: tuple[float, float, float, float] | np.ndarray | None = None,
        points: np.ndarray | None = None,
        aligned: bool = False,
    ) -> AlignedFace:
        """Align one face.

        Paths, in order: ``aligned=True`` → :func:`resize_aligned`; ``points`` (5 or 68) → :func:`align_face`
        (a box given too is ignored); ``box`` → :func:`crop_box`; nothing → the detector runs, and among the
        faces scoring at least ``min_score`` the one with the **largest box** is kept (the subject is usually
        the largest face in FER data) and aligned by its points, or box-cropped when the detector gives none.

        Args:
            image: uint8 (H, W, 3) RGB or (H, W) / (H, W, 1) grey.
            box: (x, y, w, h) face box in pixels.
            points: (5, 2) in :data:`POINT_NAMES` order or (68, 2) iBUG-300W landmarks, (x, y) pixels.
            aligned: the image already is an aligned face crop.

        Returns:
            The crop, its occlusion landmarks and its transform.

        Raises:
            DataError: bad inputs (naming the shape), ``aligned`` combined with a box or points, or no face
                found (the message starts with "no face found").
        """
        image = _as_rgb(image)
        if aligned:
            if box is not None or points is not None:
                raise DataError("Pass either aligned=True (the image is a face crop) or a box/points, not both.")
            return resize_aligned(image, self.size)
        if points is not None:
            checked = _check_points(points)
            five = landmarks68_to_points5(checked) if len(checked) == 68 else checked
            return align_face(image, five, self.size)
        if box is not None:
            return crop_box(image, box, self.size, self.margin)
        detections = self.detector.detect(image)
        kept = [d for d in detections if d.score >= self.min_score]
        if not kept:
            best = f"; best score {detections[0].score:.3f} < min_score {self.min_score}" if detections else ""
            raise DataError(
                f"no face found in the {image.shape[1]}x{image.shape[0]} image by the {self.detector.name} detector"
                f"{best}. Pass box= or points= where the data set provides them, lower min_score, or skip the sample."
            )
        face = max(kept, key=lambda d: d.area)
        if face.points is not None:
            return align_face(image, face.points, self.size)
        return crop_box(image, face.box, self.size, self.margin)

    def settings(self) -> dict[str, Any]:
        """JSON-ready settings that change the crops, for cache fingerprints.

        Includes the resolved detector ("auto" becomes "mtcnn" or "haar") with its settings (the YuNet model's
        SHA-256 among them), the crop size, margin, score threshold, template and :data:`FACES_VERSION`.
        """
        return {
            "faces_version": FACES_VERSION,
            "detector": self.detector.name,
            "detector_settings": self.detector.settings(),
            "size": self.size,
            "margin": self.margin,
            "min_score": self.min_score,
            "alignment_template": ALIGNMENT_TEMPLATE.tolist(),
        }
