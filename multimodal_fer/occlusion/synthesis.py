"""Synthetic occluders drawn on face crops: sunglasses, medical masks, hands, scarves, hair, blocks, strokes.

Shared by SynthAffect generation, training augmentation and evaluation on real face datasets. Pure numpy:
shapes are rasterised with vectorised ellipse, polygon (even-odd rule) and thick-polyline tests on the
pixel grid. Every occluder is placed relative to five facial landmarks; for aligned crops without
landmarks, :func:`canonical_landmarks` gives typical positions.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from multimodal_fer.errors import DataError

#: The occlusion kinds :func:`occlude` draws; index i is the occlusion type id i in caches.
OCCLUSION_TYPES: tuple[str, ...] = (
    "sunglasses",
    "medical_mask",
    "hand",
    "scarf",
    "hair",
    "random_block",
    "strokes",
)

#: The five landmarks occluders are placed by, in the order of :meth:`FaceLandmarks.as_array`.
LANDMARK_NAMES: tuple[str, ...] = ("left_eye", "right_eye", "nose_tip", "mouth_center", "chin")


@dataclass(frozen=True)
class FaceLandmarks:
    """Five facial landmarks as (x, y) pixel coordinates.

    Left and right are the subject's: the left eye is on the image right for a frontal face.

    Attributes:
        left_eye: centre of the subject's left eye.
        right_eye: centre of the subject's right eye.
        nose_tip: tip of the nose.
        mouth_center: centre of the mouth.
        chin: bottom of the chin.
    """

    left_eye: tuple[float, float]
    right_eye: tuple[float, float]
    nose_tip: tuple[float, float]
    mouth_center: tuple[float, float]
    chin: tuple[float, float]

    @classmethod
    def from_array(cls, points: np.ndarray) -> FaceLandmarks:
        """Build from a (5, 2) array in the order of :data:`LANDMARK_NAMES`.

        Raises:
            DataError: the array is not (5, 2) or holds non-finite values.
        """
        points = np.asarray(points, dtype=np.float64)
        if points.shape != (len(LANDMARK_NAMES), 2):
            raise DataError(
                f"Landmarks must be an array of shape (5, 2) ordered {list(LANDMARK_NAMES)}, got {points.shape}."
            )
        return cls.from_dict(dict(zip(LANDMARK_NAMES, points, strict=True)))

    @classmethod
    def from_dict(cls, points: Mapping[str, np.ndarray | tuple[float, float]]) -> FaceLandmarks:
        """Build from a mapping name → (2,) pixel coordinates; extra names are ignored.

        Args:
            points: must contain ``left_eye``, ``right_eye``, ``nose_tip``, ``mouth_center`` and ``chin``.

        Returns:
            The landmarks.

        Raises:
            DataError: a name is missing or a point is not two finite numbers.
        """
        missing = [name for name in LANDMARK_NAMES if name not in points]
        if missing:
            raise DataError(f"Landmarks {missing} are missing; FaceLandmarks needs {list(LANDMARK_NAMES)}.")
        values = {}
        for name in LANDMARK_NAMES:
            point = np.asarray(points[name], dtype=np.float64).reshape(-1)
            if point.shape != (2,) or not np.isfinite(point).all():
                raise DataError(f"Landmark {name!r} must be two finite numbers (x, y), got {points[name]!r}.")
            values[name] = (float(point[0]), float(point[1]))
        return cls(**values)

    def as_array(self) -> np.ndarray:
        """float64 (5, 2) in the order left_eye, right_eye, nose_tip, mouth_center, chin."""
        return np.array([getattr(self, name) for name in LANDMARK_NAMES], dtype=np.float64)


def canonical_landmarks(image_size: int) -> FaceLandmarks:
    """Typical landmark positions in an aligned square face crop (for datasets without landmarks).

    Args:
        image_size: crop width and height in pixels.

    Returns:
        Landmarks with the eyes 40 % from the top and the mouth 72 % from the top.
    """
    s = float(image_size)
    return FaceLandmarks(
        left_eye=(0.66 * s, 0.40 * s),
        right_eye=(0.34 * s, 0.40 * s),
        nose_tip=(0.50 * s, 0.57 * s),
        mouth_center=(0.50 * s, 0.72 * s),
        chin=(0.50 * s, 0.90 * s),
    )


# --------------------------------------------------------------------------------------------------------
# Rasterisation helpers: all return bool (H, W) masks.


@lru_cache(maxsize=8)
def _pixel_grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    xx.setflags(write=False)
    yy.setflags(write=False)
    return xx, yy


def _ellipse(shape: tuple[int, int], centre: np.ndarray, rx: float, ry: float, angle: float) -> np.ndarray:
    xx, yy = _pixel_grid(*shape)
    c, s = np.cos(angle), np.sin(angle)
    dx, dy = xx - centre[0], yy - centre[1]
    u = (c * dx + s * dy) / max(rx, 0.5)
    v = (-s * dx + c * dy) / max(ry, 0.5)
    return u * u + v * v <= 1.0


def _superellipse(
    shape: tuple[int, int], centre: np.ndarray, rx: float, ry: float, angle: float, power: float
) -> np.ndarray:
    xx, yy = _pixel_grid(*shape)
    c, s = np.cos(angle), np.sin(angle)
    dx, dy = xx - centre[0], yy - centre[1]
    u = np.abs((c * dx + s * dy) / max(rx, 0.5))
    v = np.abs((-s * dx + c * dy) / max(ry, 0.5))
    return u**power + v**power <= 1.0


def _polygon(shape: tuple[int, int], vertices: np.ndarray) -> np.ndarray:
    """Even-odd point-in-polygon test of every pixel centre; ``vertices`` float (N, 2) as (x, y)."""
    xx, yy = _pixel_grid(*shape)
    inside = np.zeros(shape, dtype=bool)
    x0, y0 = vertices[:, 0], vertices[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    # Only rows within the polygon's vertical extent can be inside.
    top = max(int(np.floor(y0.min())), 0)
    bottom = min(int(np.ceil(y0.max())) + 1, shape[0])
    if bottom <= top:
        return inside
    xs, ys = xx[top:bottom], yy[top:bottom]
    sub = inside[top:bottom]
    for ax, ay, bx, by in zip(x0, y0, x1, y1, strict=True):
        if ay == by:
            continue
        crosses = (ay > ys) != (by > ys)
        x_cross = ax + (ys - ay) * (bx - ax) / (by - ay)
        sub ^= crosses & (xs < x_cross)
    return inside


def _polyline(shape: tuple[int, int], points: np.ndarray, width: float | np.ndarray) -> np.ndarray:
    """Pixels within ``width / 2`` of a polyline (round caps and joins); ``points`` float (N, 2)."""
    xx, yy = _pixel_grid(*shape)
    widths = np.broadcast_to(np.asarray(width, dtype=np.float64), (len(points) - 1,))
    mask = np.zeros(shape, dtype=bool)
    for (ax, ay), (bx, by), w in zip(points[:-1], points[1:], widths, strict=True):
        radius = w / 2.0
        x_lo = max(int(min(ax, bx) - radius) - 1, 0)
        x_hi = min(int(max(ax, bx) + radius) + 2, shape[1])
        y_lo = max(int(min(ay, by) - radius) - 1, 0)
        y_hi = min(int(max(ay, by) + radius) + 2, shape[0])
        if x_hi <= x_lo or y_hi <= y_lo:
            continue
        px, py = xx[y_lo:y_hi, x_lo:x_hi] - ax, yy[y_lo:y_hi, x_lo:x_hi] - ay
        ex, ey = bx - ax, by - ay
        t = np.clip((px * ex + py * ey) / max(ex * ex + ey * ey, 1e-9), 0.0, 1.0)
        dist2 = (px - t * ex) ** 2 + (py - t * ey) ** 2
        mask[y_lo:y_hi, x_lo:x_hi] |= dist2 <= radius * radius
    return mask


def _rotate(points: np.ndarray, angle: float, centre: np.ndarray) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    rel = points - centre
    return np.stack([c * rel[:, 0] - s * rel[:, 1], s * rel[:, 0] + c * rel[:, 1]], axis=1) + centre


# --------------------------------------------------------------------------------------------------------
# Occluders: each returns (mask bool (H, W), layer float32 (H, W, 3) in [0, 1]); only masked pixels of
# the layer are used.


@dataclass(frozen=True)
class _Frame:
    """Landmark-derived geometry of a face in the image."""

    eyes_mid: np.ndarray
    eye_distance: float
    angle: float  # in-plane rotation of the eye line (radians)
    down: np.ndarray  # unit vector from the eyes towards the mouth
    right: np.ndarray  # unit vector along the eye line, image left → right


def _frame(lm: FaceLandmarks) -> _Frame:
    left, right = np.array(lm.left_eye), np.array(lm.right_eye)
    # The subject's right eye is on the image left for a frontal face.
    axis = left - right
    distance = float(max(np.linalg.norm(axis), 2.0))
    unit = axis / distance
    return _Frame(
        eyes_mid=(left + right) / 2.0,
        eye_distance=distance,
        angle=float(np.arctan2(unit[1], unit[0])),
        down=np.array([-unit[1], unit[0]]),
        right=unit,
    )


def _shade(shape: tuple[int, int], base: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    """A colour layer with a random linear shading gradient and fine noise, float32 (H, W, 3)."""
    xx, yy = _pixel_grid(*shape)
    angle = rng.uniform(0.0, 2.0 * np.pi)
    ramp = (np.cos(angle) * xx + np.sin(angle) * yy) / max(shape)
    ramp = ramp - ramp.mean()
    noise = rng.normal(0.0, 0.02, shape).astype(np.float32)
    gain = 1.0 + strength * ramp + noise
    return np.clip(base[None, None, :].astype(np.float32) * gain[..., None], 0.0, 1.0)


def _sunglasses(shape: tuple[int, int], lm: FaceLandmarks, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    f = _frame(lm)
    d = f.eye_distance
    rx = d * rng.uniform(0.40, 0.52)
    ry = rx * rng.uniform(0.62, 0.9)
    power = rng.uniform(2.0, 4.0)  # round → rectangular lenses
    drop = f.down * d * rng.uniform(-0.02, 0.08)
    mask = np.zeros(shape, dtype=bool)
    for eye in (np.array(lm.left_eye), np.array(lm.right_eye)):
        mask |= _superellipse(shape, eye + drop, rx, ry, f.angle, power)
    frame_width = max(1.0, d * rng.uniform(0.05, 0.1))
    bridge_pts = np.array([f.eyes_mid - f.right * (d / 2 - rx * 0.8), f.eyes_mid + f.right * (d / 2 - rx * 0.8)])
    mask |= _polyline(shape, bridge_pts + drop - f.down * ry * 0.3, frame_width)
    for side in (1.0, -1.0):
        start = f.eyes_mid + side * f.right * (d / 2 + rx * 0.9) + drop - f.down * ry * 0.3
        end = start + side * f.right * d * 0.7 - f.down * d * 0.05
        mask |= _polyline(shape, np.array([start, end]), frame_width * 0.8)
    tint = rng.uniform(0.0, 0.25) * rng.dirichlet(np.ones(3)) * 3.0
    base = np.clip(rng.uniform(0.02, 0.15) + tint * 0.3, 0.0, 0.6)
    layer = _shade(shape, base, rng, 1.5)
    # A specular streak across the lenses.
    xx, yy = _pixel_grid(*shape)
    streak = np.abs((xx - f.eyes_mid[0]) * 0.7 + (yy - f.eyes_mid[1]) - rng.uniform(-0.5, 0.2) * ry) < ry * 0.18
    layer[streak] = np.clip(layer[streak] + rng.uniform(0.1, 0.35), 0.0, 1.0)
    return mask, layer


def _medical_mask(shape: tuple[int, int], lm: FaceLandmarks, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    f = _frame(lm)
    d = f.eye_distance
    eyes, nose, chin = f.eyes_mid, np.array(lm.nose_tip), np.array(lm.chin)
    top_centre = eyes + (nose - eyes) * rng.uniform(0.45, 0.62)
    bottom_centre = chin + f.down * d * rng.uniform(0.05, 0.25)
    half = d * rng.uniform(0.95, 1.15)
    t = np.linspace(0.0, np.pi, 14)
    mid = (top_centre + bottom_centre) / 2.0
    span = float(np.linalg.norm(bottom_centre - top_centre)) / 2.0
    # Top edge: a shallow arch over the nose; bottom: a rounded cup under the chin.
    top = np.array([top_centre + f.right * half * np.cos(a) - f.down * 0.12 * d * np.sin(a) for a in t])
    bottom = np.array(
        [mid + f.right * half * 0.95 * np.cos(a) + f.down * span * (0.55 + 0.45 * np.sin(a)) for a in t[::-1]]
    )
    outline = np.concatenate([top, bottom])
    mask = _polygon(shape, outline)
    strap_width = max(1.0, d * rng.uniform(0.04, 0.07))
    for side in (1.0, -1.0):
        for anchor, rise in ((top_centre + f.down * span * 0.3, 0.25), (mid + f.down * span * 0.6, -0.1)):
            start = anchor + side * f.right * half * 0.95
            end = start + side * f.right * d * 0.7 - f.down * d * rise
            mask |= _polyline(shape, np.array([start, end]), strap_width)
    colours = np.array(
        [[0.62, 0.80, 0.92], [0.93, 0.94, 0.95], [0.55, 0.75, 0.85], [0.12, 0.12, 0.13], [0.92, 0.75, 0.80]]
    )
    base = colours[rng.choice(len(colours), p=[0.45, 0.3, 0.1, 0.1, 0.05])] * rng.uniform(0.9, 1.05)
    layer = _shade(shape, base, rng, 0.8)
    # Horizontal pleats.
    xx, yy = _pixel_grid(*shape)
    along = (xx - top_centre[0]) * f.down[0] + (yy - top_centre[1]) * f.down[1]
    period = max(2.0, 2.0 * span / rng.uniform(3.5, 5.0))
    pleat = np.cos(2 * np.pi * along / period) > 0.8
    layer[pleat] *= 0.82
    return mask, layer


def _hand(shape: tuple[int, int], lm: FaceLandmarks, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    f = _frame(lm)
    d = f.eye_distance
    targets = {
        "mouth": np.array(lm.mouth_center),
        "cheek": (np.array(lm.nose_tip) + np.array(lm.left_eye if rng.random() < 0.5 else lm.right_eye)) / 2,
        "eye": np.array(lm.left_eye if rng.random() < 0.5 else lm.right_eye),
    }
    target = targets[("mouth", "cheek", "eye")[rng.choice(3, p=[0.45, 0.3, 0.25])]]
    target = target + rng.normal(0.0, 0.1 * d, 2)
    side = rng.choice([-1.0, 1.0])
    # Direction the fingers point: from the side (or from below) across the face.
    angle = (0.0 if side > 0 else np.pi) + rng.uniform(-0.6, 0.6)
    if rng.random() < 0.25:
        angle = -np.pi / 2 + rng.uniform(-0.5, 0.5)  # fingers pointing up, hand from below
    direction = np.array([np.cos(angle), np.sin(angle)])
    normal = np.array([-direction[1], direction[0]])
    scale = d * rng.uniform(0.85, 1.15)
    palm_centre = target - direction * scale * 0.55
    mask = _ellipse(shape, palm_centre, scale * 0.62, scale * 0.5, angle)
    # Wrist/forearm back to the image border.
    mask |= _polyline(shape, np.array([palm_centre, palm_centre - direction * scale * 3.0]), scale * 0.75)
    # Four fingers fanning out, plus a thumb.
    spread = rng.uniform(0.0, 0.12)
    finger_width = scale * rng.uniform(0.17, 0.21)
    for k, (offset, length) in enumerate(zip((-0.33, -0.11, 0.11, 0.33), (0.72, 0.85, 0.8, 0.62), strict=True)):
        root = palm_centre + direction * scale * 0.4 + normal * offset * scale
        bend = direction + normal * (k - 1.5) * spread
        bend /= np.linalg.norm(bend)
        tip = root + bend * length * scale * rng.uniform(0.9, 1.1)
        mid = (root + tip) / 2 + normal * rng.normal(0.0, 0.03) * scale
        mask |= _polyline(shape, np.array([root, mid, tip]), finger_width)
    thumb_side = rng.choice([-1.0, 1.0])
    thumb_root = palm_centre + normal * thumb_side * scale * 0.4
    thumb_tip = thumb_root + (direction * 0.45 + normal * thumb_side * 0.4) * scale
    mask |= _polyline(shape, np.array([thumb_root, thumb_tip]), finger_width * 1.1)
    t = rng.uniform()
    skin = np.array([0.95, 0.78, 0.66]) * (1 - t) + np.array([0.36, 0.23, 0.16]) * t
    layer = _shade(shape, skin * rng.uniform(0.85, 1.1), rng, 1.2)
    return mask, layer


def _scarf(shape: tuple[int, int], lm: FaceLandmarks, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    f = _frame(lm)
    d = f.eye_distance
    nose, mouth = np.array(lm.nose_tip), np.array(lm.mouth_center)
    top_point = nose + (mouth - nose) * rng.uniform(-0.2, 0.6)
    xx, yy = _pixel_grid(*shape)
    rel_x = (xx - top_point[0]) * f.right[0] + (yy - top_point[1]) * f.right[1]
    rel_y = (xx - top_point[0]) * f.down[0] + (yy - top_point[1]) * f.down[1]
    wave = d * rng.uniform(0.03, 0.12) * np.sin(2 * np.pi * rel_x / (d * rng.uniform(0.8, 2.0)) + rng.uniform(0, 6.3))
    sag = d * rng.uniform(-0.1, 0.25) * (rel_x / (1.5 * d)) ** 2  # edge rises towards the sides
    mask = rel_y >= wave - sag
    palette = rng.uniform(0.05, 0.95, (2, 3))
    pattern = rng.choice(3)
    period = d * rng.uniform(0.15, 0.4)
    if pattern == 0:  # stripes
        select = (np.floor(rel_y / period) % 2).astype(bool)
    elif pattern == 1:  # check
        select = ((np.floor(rel_y / period) + np.floor(rel_x / period)) % 2).astype(bool)
    else:  # knit: small chevrons
        select = (np.floor((rel_y + np.abs((rel_x % period) - period / 2)) / (period / 2)) % 2).astype(bool)
    layer = np.where(select[..., None], palette[0], palette[1]).astype(np.float32)
    layer *= (1.0 + rng.normal(0.0, 0.05, shape)).astype(np.float32)[..., None]
    # Soft folds.
    layer *= (1.0 + 0.12 * np.sin(2 * np.pi * rel_x / (d * rng.uniform(0.5, 1.0))))[..., None].astype(np.float32)
    return mask, np.clip(layer, 0.0, 1.0)


def _hair(shape: tuple[int, int], lm: FaceLandmarks, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    f = _frame(lm)
    d = f.eye_distance
    side = rng.choice([-1.0, 1.0])  # which eye the fringe sweeps over
    eye = np.array(lm.left_eye if side * f.right[0] > 0 else lm.right_eye)
    top = f.eyes_mid - f.down * d * rng.uniform(1.2, 1.6)
    mask = np.zeros(shape, dtype=bool)
    n_strands = int(rng.integers(9, 16))
    width = d * rng.uniform(0.12, 0.2)
    for k in range(n_strands):
        u = k / max(n_strands - 1, 1)
        start = top + f.right * d * (u * 2.4 - 1.2) - f.down * d * 0.3
        # Strands sweep from the top across the forehead, the longest reaching over the chosen eye.
        reach = rng.uniform(0.5, 1.0) * (1.0 if side * (u - 0.5) > 0 else 0.55)
        end = start + f.down * d * (1.2 + 0.8 * reach) + f.right * side * d * rng.uniform(0.1, 0.5)
        end = end + (eye - end) * 0.45 * reach
        mid = (start + end) / 2 + f.right * side * d * rng.uniform(-0.1, 0.3)
        mask |= _polyline(shape, np.array([start, mid, end]), np.array([width * 1.3, width * 0.7]))
    # A solid fringe mass along the top.
    mask |= _ellipse(shape, top - f.down * d * 0.3, d * 1.7, d * rng.uniform(0.55, 0.8), f.angle)
    colours = np.array(
        [
            [0.05, 0.04, 0.04],
            [0.17, 0.11, 0.07],
            [0.35, 0.23, 0.13],
            [0.65, 0.52, 0.33],
            [0.52, 0.25, 0.11],
            [0.6, 0.6, 0.6],
        ]
    )
    base = colours[rng.choice(len(colours))] * rng.uniform(0.8, 1.2)
    layer = _shade(shape, base, rng, 1.0)
    xx, yy = _pixel_grid(*shape)
    strands = np.sin(2 * np.pi * ((xx * f.right[0] + yy * f.right[1]) / max(d * 0.07, 1.0)) + 0.3 * yy)
    layer *= (1.0 + 0.18 * strands)[..., None].astype(np.float32)
    return mask, np.clip(layer, 0.0, 1.0)


def _random_block(shape: tuple[int, int], lm: FaceLandmarks, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    h, w = shape
    centre = np.array(lm.nose_tip)
    mask = np.zeros(shape, dtype=bool)
    for _ in range(int(rng.integers(1, 4))):
        bw, bh = rng.uniform(0.15, 0.45) * w, rng.uniform(0.15, 0.45) * h
        cx = centre[0] + rng.uniform(-0.3, 0.3) * w
        cy = centre[1] + rng.uniform(-0.35, 0.3) * h
        x0, x1 = int(np.clip(cx - bw / 2, 0, w - 1)), int(np.clip(cx + bw / 2, 1, w))
        y0, y1 = int(np.clip(cy - bh / 2, 0, h - 1)), int(np.clip(cy + bh / 2, 1, h))
        mask[y0 : max(y1, y0 + 1), x0 : max(x1, x0 + 1)] = True
    fill = rng.choice(3)
    if fill == 0:
        layer = np.broadcast_to(rng.uniform(0.0, 1.0, 3).astype(np.float32), (h, w, 3)).copy()
    elif fill == 1:
        layer = rng.uniform(0.0, 1.0, (h, w, 3)).astype(np.float32)
    else:
        layer = np.full((h, w, 3), float(rng.choice([0.0, 0.5, 1.0])), dtype=np.float32)
    return mask, layer


def _strokes(shape: tuple[int, int], lm: FaceLandmarks, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Free-form brush strokes: random walks with random turns and a thick round brush."""
    h, w = shape
    size = float(min(h, w))
    mask = np.zeros(shape, dtype=bool)
    centre = np.array(lm.nose_tip)
    for _ in range(int(rng.integers(1, 4))):
        n_vertex = int(rng.integers(4, 10))
        start = centre + rng.uniform(-0.3, 0.3, 2) * size
        angle = rng.uniform(0.0, 2.0 * np.pi)
        points = [start]
        for _ in range(n_vertex):
            angle += rng.uniform(-np.pi / 2.5, np.pi / 2.5) + (np.pi if rng.random() < 0.15 else 0.0)
            length = rng.uniform(0.08, 0.22) * size
            points.append(np.clip(points[-1] + length * np.array([np.cos(angle), np.sin(angle)]), 0, size - 1))
        mask |= _polyline(shape, np.array(points), rng.uniform(0.05, 0.13) * size)
    colour = rng.choice(3)
    if colour == 0:
        layer = np.ones((h, w, 3), dtype=np.float32) * float(rng.choice([0.0, 1.0]))
    elif colour == 1:
        layer = np.broadcast_to(rng.uniform(0.0, 1.0, 3).astype(np.float32), (h, w, 3)).copy()
    else:
        layer = rng.uniform(0.0, 1.0, (h, w, 3)).astype(np.float32)
    return mask, layer


_DRAWERS: dict[str, Callable[[tuple[int, int], FaceLandmarks, np.random.Generator], tuple[np.ndarray, np.ndarray]]] = {
    "sunglasses": _sunglasses,
    "medical_mask": _medical_mask,
    "hand": _hand,
    "scarf": _scarf,
    "hair": _hair,
    "random_block": _random_block,
    "strokes": _strokes,
}


def occlude(
    face: np.ndarray, kind: str, rng: np.random.Generator, landmarks: FaceLandmarks | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Draw one synthetic occluder on a face crop.

    Args:
        face: uint8 (H, W, 3) RGB face crop.
        kind: one of :data:`OCCLUSION_TYPES`.
        rng: draws the occluder's shape, placement, colour and texture (same state → same output).
        landmarks: facial landmarks in pixels; None uses :func:`canonical_landmarks` (for aligned square
            crops).

    Returns:
        ``(occluded, mask)``: occluded uint8 (H, W, 3), equal to ``face`` byte for byte outside the mask,
        and mask bool (H, W), True where the occluder covers the face.

    Raises:
        DataError: ``face`` is not uint8 (H, W, 3) with H, W >= 8, or ``kind`` is unknown.
    """
    if not isinstance(face, np.ndarray) or face.dtype != np.uint8 or face.ndim != 3 or face.shape[2] != 3:
        description = f"{face.dtype} {face.shape}" if isinstance(face, np.ndarray) else type(face).__name__
        raise DataError(f"occlude() needs a uint8 RGB image of shape (H, W, 3), got {description}.")
    height, width = face.shape[:2]
    if min(height, width) < 8:
        raise DataError(f"occlude() needs an image of at least 8×8 pixels, got {height}×{width}.")
    if kind not in _DRAWERS:
        raise DataError(f"Unknown occlusion kind {kind!r}; valid kinds: {list(OCCLUSION_TYPES)}.")
    if landmarks is None:
        landmarks = canonical_landmarks(min(height, width))
    mask, layer = _DRAWERS[kind]((height, width), landmarks, rng)
    occluded = face.copy()
    occluded[mask] = np.clip(layer[mask] * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return occluded, mask
