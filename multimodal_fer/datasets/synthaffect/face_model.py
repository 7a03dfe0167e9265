"""A parametric 3D face mesh whose geometry is animated by FACS action units (numpy only).

The head is a lofted grid surface: each grid row is a horizontal cross-section (a flattened ellipse whose
width and depth follow a profile from the neck to the crown) and each column a direction around the head.
Facial features (nose, brow ridge, eye sockets and eyeballs, cheeks, lips, chin) are displacements of that
surface, defined on the *material* coordinates ``(x0, y0)`` of each vertex (its frontal position at
rest). Action units are smooth displacement fields on the same coordinates; region labels (skin, brow,
eye white, lips, ...) belong to the material, so a deformation that opens the eye or the mouth stretches
the eye-white or mouth-interior triangles into view. The mouth is a slit of extra grid rows that are
geometrically closed at rest and open when the jaw drops or the lips part.

Frame: metres, head centre at the origin, +x towards the subject's left (image right when facing the
camera), +y up, +z towards the camera.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from multimodal_fer.datasets.synthaffect.labels import SYNTHAFFECT_AUS
from multimodal_fer.errors import DataError

#: Region ids of :attr:`FaceMesh.vertex_region`.
REGION_SKIN = 0
REGION_BROW = 1
REGION_EYE_WHITE = 2
REGION_IRIS = 3
REGION_PUPIL = 4
REGION_LIPS = 5
REGION_MOUTH = 6
REGION_TEETH = 7
REGION_NOSTRIL = 8
REGION_HAIR = 9
#: Region names indexed by id.
REGION_NAMES: tuple[str, ...] = (
    "skin",
    "brow",
    "eye_white",
    "iris",
    "pupil",
    "lips",
    "mouth_interior",
    "teeth",
    "nostril",
    "hair",
)

#: Names of :attr:`FaceMesh.landmarks_3d` (left/right are the subject's: left is +x).
LANDMARK_NAMES: tuple[str, ...] = (
    "left_eye",
    "right_eye",
    "nose_tip",
    "mouth_center",
    "chin",
    "left_mouth_corner",
    "right_mouth_corner",
    "left_brow",
    "right_brow",
)

#: Height of the eye line above the head centre, metres.
EYE_Y = 0.022

_AU_INDEX = {au: i for i, au in enumerate(SYNTHAFFECT_AUS)}

# Grid resolution: columns around the head, rows in the face band, rows of the mouth slit.
_N_COLS = 71
_FACE_ROW_STEP = 0.0021
_FOREHEAD_ROW_STEP = 0.003
_N_SLIT = 8
_THETA_MAX = 0.7 * np.pi
_COL_ALPHA = 0.35
# Depth profile of the mouth-slit rows into the mouth (fraction of the opening) and their regions.
_SLIT_DEPTH = np.array([0.0, 0.22, 0.3, 0.75, 1.0, 0.8, 0.35, 0.0])
_SLIT_REGION = np.array(
    [REGION_LIPS, REGION_TEETH, REGION_TEETH, REGION_MOUTH, REGION_MOUTH, REGION_MOUTH, REGION_TEETH, REGION_LIPS],
    dtype=np.uint8,
)

_SKIN_LIGHT = np.array([0.96, 0.80, 0.69])
_SKIN_MEDIUM = np.array([0.78, 0.57, 0.42])
_SKIN_DARK = np.array([0.33, 0.21, 0.14])
_IRIS_COLOURS = np.array(
    [
        [0.30, 0.17, 0.08],
        [0.16, 0.09, 0.05],
        [0.42, 0.33, 0.16],
        [0.28, 0.42, 0.28],
        [0.30, 0.45, 0.62],
        [0.45, 0.50, 0.55],
    ]
)
_IRIS_WEIGHTS = np.array([0.35, 0.25, 0.12, 0.08, 0.14, 0.06])
_HAIR_COLOURS = np.array(
    [
        [0.05, 0.04, 0.04],
        [0.16, 0.10, 0.06],
        [0.32, 0.21, 0.12],
        [0.62, 0.50, 0.32],
        [0.50, 0.23, 0.10],
        [0.55, 0.55, 0.55],
    ]
)
_HAIR_WEIGHTS = np.array([0.34, 0.26, 0.17, 0.10, 0.06, 0.07])


@dataclass(frozen=True)
class FaceIdentity:
    """Stable per-subject face traits (lengths in metres, colours as linear-ish RGB floats in [0, 1]).

    Attributes:
        face_width: full width at the cheekbones.
        face_height: distance from the eye line down to the chin.
        face_depth: how far the face front lies in front of the head centre.
        jaw_width: jaw width at mouth level as a fraction of the face width.
        nose_length: nose root (eye line) to nose tip.
        nose_width: alar (nostril wings) width.
        nose_projection: how far the tip stands out of the face.
        eye_spacing: distance between the pupils.
        eye_size: scale of the eye opening (1 = average).
        brow_height: eye centre to the lower edge of the eyebrow.
        brow_thickness: eyebrow height at its inner end.
        lip_fullness: scale of the lip heights and volume (1 = average).
        mouth_width: corner-to-corner width of the closed mouth.
        forehead_height: eye line to the front hairline.
        skin_tone: RGB skin albedo, float (3,).
        iris_colour: RGB iris albedo, float (3,).
        hair_colour: RGB hair and eyebrow albedo, float (3,).
        lip_colour: RGB lip albedo, float (3,).
    """

    face_width: float = 0.146
    face_height: float = 0.117
    face_depth: float = 0.092
    jaw_width: float = 0.78
    nose_length: float = 0.045
    nose_width: float = 0.036
    nose_projection: float = 0.021
    eye_spacing: float = 0.063
    eye_size: float = 1.0
    brow_height: float = 0.016
    brow_thickness: float = 0.0055
    lip_fullness: float = 1.0
    mouth_width: float = 0.052
    forehead_height: float = 0.062
    skin_tone: tuple[float, float, float] = (0.78, 0.57, 0.42)
    iris_colour: tuple[float, float, float] = (0.30, 0.17, 0.08)
    hair_colour: tuple[float, float, float] = (0.16, 0.10, 0.06)
    lip_colour: tuple[float, float, float] = (0.66, 0.33, 0.30)


def sample_face_identity(rng: np.random.Generator) -> FaceIdentity:
    """Draw a random face identity with realistic proportions and skin, iris and hair colours.

    Args:
        rng: the random generator (consumed deterministically).

    Returns:
        A new :class:`FaceIdentity`.
    """
    u = rng.uniform(size=14)
    # Skin: a path light → medium → dark, with a small undertone jitter.
    t = rng.uniform()
    skin = (
        _SKIN_LIGHT + (_SKIN_MEDIUM - _SKIN_LIGHT) * (t / 0.5)
        if t < 0.5
        else _SKIN_MEDIUM + (_SKIN_DARK - _SKIN_MEDIUM) * ((t - 0.5) / 0.5)
    )
    skin = np.clip(skin * (1.0 + rng.normal(0.0, 0.03, 3)), 0.05, 1.0)
    lip = np.clip(skin * np.array([0.86, 0.52, 0.52]) + np.array([0.08, 0.0, 0.02]) * rng.uniform(0.3, 1.0), 0, 1)
    iris = _IRIS_COLOURS[rng.choice(len(_IRIS_COLOURS), p=_IRIS_WEIGHTS)] * rng.uniform(0.85, 1.15)
    if t > 0.4:  # darker skin: mostly dark irises and hair
        iris = _IRIS_COLOURS[rng.choice(2)] * rng.uniform(0.85, 1.1)
        hair = _HAIR_COLOURS[rng.choice(2)] * rng.uniform(0.8, 1.2)
    else:
        hair = _HAIR_COLOURS[rng.choice(len(_HAIR_COLOURS), p=_HAIR_WEIGHTS)] * rng.uniform(0.8, 1.2)

    def lerp(i: int, low: float, high: float) -> float:
        return float(low + (high - low) * u[i])

    return FaceIdentity(
        face_width=lerp(0, 0.134, 0.160),
        face_height=lerp(1, 0.106, 0.128),
        face_depth=lerp(2, 0.086, 0.098),
        jaw_width=lerp(3, 0.68, 0.88),
        nose_length=lerp(4, 0.038, 0.052),
        nose_width=lerp(5, 0.030, 0.044),
        nose_projection=lerp(6, 0.016, 0.026),
        eye_spacing=lerp(7, 0.058, 0.068),
        eye_size=lerp(8, 0.85, 1.15),
        brow_height=lerp(9, 0.013, 0.020),
        brow_thickness=lerp(10, 0.0042, 0.0072),
        lip_fullness=lerp(11, 0.65, 1.35),
        mouth_width=lerp(12, 0.045, 0.058),
        forehead_height=lerp(13, 0.052, 0.075),
        skin_tone=tuple(float(c) for c in skin),
        iris_colour=tuple(float(c) for c in np.clip(iris, 0, 1)),
        hair_colour=tuple(float(c) for c in np.clip(hair, 0, 1)),
        lip_colour=tuple(float(c) for c in lip),
    )


@dataclass
class FaceMesh:
    """A triangle mesh of a head in the head frame (metres, +x subject's left, +y up, +z to the camera).

    Attributes:
        vertices: float32 (V, 3) vertex positions.
        triangles: int32 (F, 3) vertex indices, counter-clockwise seen from outside.
        vertex_region: uint8 (V,) region id per vertex (``REGION_*`` constants of this module).
        landmarks_3d: name → float32 (3,) position, for every name in :data:`LANDMARK_NAMES`.
        vertex_normals: float32 (V, 3) unit outward normals, or None (renderers then compute them).
    """

    vertices: np.ndarray
    triangles: np.ndarray
    vertex_region: np.ndarray
    landmarks_3d: dict[str, np.ndarray] = field(default_factory=dict)
    vertex_normals: np.ndarray | None = None


def _gauss(x: np.ndarray, y: np.ndarray, cx: float, cy: float, sx: float, sy: float) -> np.ndarray:
    return np.exp(-0.5 * (((x - cx) / sx) ** 2 + ((y - cy) / sy) ** 2))


def _smoothstep(v: np.ndarray) -> np.ndarray:
    v = np.clip(v, 0.0, 1.0)
    return v * v * (3.0 - 2.0 * v)


def _row_layout(identity: FaceIdentity) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Rows of the grid, bottom to top.

    Returns:
        ``(y_rows (R,), slit_s (R,), n_neck, first_slit_row)``: ``slit_s`` is 1 below the mouth slit, 0
        above it and goes 1 → 0 across the slit rows; the first ``n_neck`` rows are neck/under-chin rows.
    """
    chin_y = EYE_Y - identity.face_height
    mouth_y = _mouth_y(identity)
    crown_y = EYE_Y + identity.forehead_height + 0.055
    face_top = EYE_Y + identity.forehead_height + 0.012
    # Face band: uniform rows, with the mouth slit rows packed into 0.6 mm at mouth level.
    fine_top = EYE_Y + identity.brow_height + 0.014
    face_rows = np.concatenate(
        [np.arange(chin_y, fine_top, _FACE_ROW_STEP), np.arange(fine_top, face_top, _FOREHEAD_ROW_STEP)]
    )
    face_rows = face_rows[np.abs(face_rows - mouth_y) > 0.0009]
    below = face_rows[face_rows < mouth_y]
    above = face_rows[face_rows > mouth_y]
    slit_rows = mouth_y + np.linspace(-0.0003, 0.0003, _N_SLIT)
    top_rows = np.linspace(face_top, crown_y, 10)[1:]
    neck_rows = np.array([chin_y - 0.10, chin_y - 0.075, chin_y - 0.05, chin_y - 0.03, chin_y - 0.014, chin_y - 0.005])
    y_rows = np.concatenate([neck_rows, below, slit_rows, above, top_rows])
    slit_s = np.concatenate(
        [np.ones(len(neck_rows) + len(below)), np.linspace(1.0, 0.0, _N_SLIT), np.zeros(len(above) + len(top_rows))]
    )
    return y_rows, slit_s, len(neck_rows), len(neck_rows) + len(below)


def _smooth_interp(y: np.ndarray, keys_y: list[float], keys_v: list[float]) -> np.ndarray:
    """Piecewise-linear profile through the keys, smoothed (no creases) and sampled at ``y``."""
    fine = np.linspace(keys_y[0], keys_y[-1], 160)
    values = np.interp(fine, keys_y, keys_v)
    kernel = np.full(9, 1.0 / 9.0)
    for _ in range(3):
        values = np.convolve(np.pad(values, 4, mode="edge"), kernel, mode="valid")
    return np.interp(y, fine, values)


def _mouth_y(identity: FaceIdentity) -> float:
    nose_tip = EYE_Y - identity.nose_length
    chin_y = EYE_Y - identity.face_height
    return nose_tip + 0.42 * (chin_y - nose_tip)


def _columns() -> np.ndarray:
    s = np.linspace(-1.0, 1.0, _N_COLS)
    return _THETA_MAX * (_COL_ALPHA * s + (1.0 - _COL_ALPHA) * s**3)


_THETA = _columns()


def _grid_triangles(rows: int, cols: int) -> np.ndarray:
    r, c = np.meshgrid(np.arange(rows - 1), np.arange(cols - 1), indexing="ij")
    v00 = (r * cols + c).ravel()
    v01 = v00 + 1
    v10 = v00 + cols
    v11 = v10 + 1
    # Rows go bottom → top and columns right → left of the subject (theta increasing = +x), so
    # (v00, v01, v11) is counter-clockwise seen from outside.
    first = np.stack([v00, v01, v11], axis=1)
    second = np.stack([v00, v11, v10], axis=1)
    return np.concatenate([first, second]).astype(np.int32)


_TRIANGLE_CACHE: dict[tuple[int, int], np.ndarray] = {}


def build_face_mesh(identity: FaceIdentity, au_intensity: np.ndarray, asymmetry: float = 0.0) -> FaceMesh:
    """Build the head mesh of one identity posed with the given action-unit intensities.

    Args:
        identity: the subject's face traits.
        au_intensity: float (K,) intensities in [0, 1] aligned to ``SYNTHAFFECT_AUS`` (K = 16).
        asymmetry: in [-1, 1]; > 0 weakens AU12/AU14 on the subject's right side (1 = left side only),
            < 0 weakens them on the left side.

    Returns:
        The deformed :class:`FaceMesh` (about 18k triangles).

    Raises:
        DataError: ``au_intensity`` has the wrong shape.
    """
    au = np.asarray(au_intensity, dtype=np.float64)
    if au.shape != (len(SYNTHAFFECT_AUS),):
        raise DataError(
            f"au_intensity must have shape ({len(SYNTHAFFECT_AUS)},) aligned to SYNTHAFFECT_AUS "
            f"{SYNTHAFFECT_AUS}, got {au.shape}."
        )
    au = np.clip(np.nan_to_num(au), 0.0, 1.0)

    def a(number: int) -> float:
        return float(au[_AU_INDEX[number]])

    asym = float(np.clip(asymmetry, -1.0, 1.0))
    side_weight = {1: min(1.0, 1.0 + asym), -1: min(1.0, 1.0 - asym)}  # +1 = subject's left (+x)

    y_rows, slit_s, n_neck, first_slit = _row_layout(identity)
    n_rows, n_cols = len(y_rows), _N_COLS
    chin_y = EYE_Y - identity.face_height
    mouth_y = _mouth_y(identity)
    half_w = identity.face_width / 2.0
    forehead = EYE_Y + identity.forehead_height
    crown_y = y_rows[-1]

    # --- Base loft: per-row half-width, front depth, back depth and depth offset. --------------------
    keys_y = [
        chin_y,
        chin_y + 0.012,
        mouth_y,
        mouth_y + 0.02,
        EYE_Y - 0.01,
        EYE_Y + 0.03,
        forehead,
        crown_y - 0.025,
        crown_y - 0.008,
        crown_y,
    ]
    keys_w = [0.40, 0.55, 0.95 * identity.jaw_width, 0.94, 1.0, 0.98, 0.9, 0.66, 0.36, 0.02]
    keys_f = [0.80, 0.92, 0.95, 0.97, 1.0, 0.99, 0.9, 0.6, 0.3, 0.02]
    keys_b = [0.035, 0.045, 0.06, 0.08, 0.10, 0.105, 0.10, 0.075, 0.04, 0.005]
    width = half_w * _smooth_interp(y_rows, keys_y, keys_w)
    front = identity.face_depth * _smooth_interp(y_rows, keys_y, keys_f)
    back = _smooth_interp(y_rows, keys_y, keys_b)
    z_off = _smooth_interp(y_rows, [chin_y, mouth_y, EYE_Y, crown_y], [-0.006, -0.006, 0.0, -0.01])
    # Neck and under-chin rows.
    width[:n_neck] = [0.05, 0.05, 0.05, 0.05, 0.05, 0.042]
    front[:n_neck] = [0.044, 0.044, 0.044, 0.045, 0.05, 0.062]
    back[:n_neck] = 0.05
    z_off[:n_neck] = -0.012

    sin_t, cos_t = np.sin(_THETA), np.cos(_THETA)
    front_z = np.sign(cos_t) * np.abs(cos_t) ** 0.62
    x0 = width[:, None] * sin_t[None, :]
    z_front = front[:, None] * front_z[None, :]
    z_back = back[:, None] * cos_t[None, :]
    z0 = z_off[:, None] + np.where(cos_t[None, :] > 0.0, z_front, z_back)
    y0 = np.broadcast_to(y_rows[:, None], x0.shape)
    x0, y0, z0 = x0.ravel(), np.ascontiguousarray(y0).ravel(), z0.ravel()
    n_vert = x0.size
    region = np.zeros(n_vert, dtype=np.uint8)
    row_of = np.repeat(np.arange(n_rows), n_cols)
    s_v = slit_s[row_of]

    # Work on the front of the face only (features and AUs live there).
    facing = np.broadcast_to((cos_t > 0.25)[None, :], (n_rows, n_cols)).ravel() & (y0 > chin_y - 0.004)
    fi = np.flatnonzero(facing)
    x, y = x0[fi].astype(np.float32), y0[fi].astype(np.float32)
    s = s_v[fi].astype(np.float32)
    fw = _smoothstep((np.broadcast_to(cos_t[None, :], (n_rows, n_cols)).ravel()[fi] - 0.25) / 0.45)
    dz = np.zeros_like(x)
    ax = np.abs(x)
    sx = np.where(x >= 0.0, 1.0, -1.0)

    ex = identity.eye_spacing / 2.0
    ew = 0.0158 * identity.eye_size
    hu, hl = 0.0058 * identity.eye_size, 0.0045 * identity.eye_size
    brow_y = EYE_Y + identity.brow_height
    nose_tip_y = EYE_Y - identity.nose_length
    nose_root_y = EYE_Y + 0.004
    mw = identity.mouth_width / 2.0
    lf = identity.lip_fullness

    # --- Static features (z displacements). ---------------------------------------------------------
    dz += 0.005 * np.exp(-0.5 * ((y - (brow_y + 0.001)) / 0.0075) ** 2) * np.exp(-((x / 0.052) ** 4))
    dz -= 0.0085 * _gauss(ax, y, ex, EYE_Y + 0.001, 0.0135, 0.0095)
    dz += 0.0075 * _gauss(ax, y, 0.038, EYE_Y - 0.040, 0.017, 0.016)
    tn = (nose_root_y - y) / (nose_root_y - nose_tip_y)
    sigma = (0.0042 + 0.0042 * np.clip(tn, 0, 1)) * identity.nose_width / 0.036
    profile = identity.nose_projection * (0.28 + 0.72 * np.clip(tn, 0, 1) ** 1.4)
    profile = np.where(tn < 0.0, profile * np.exp(-((tn / 0.25) ** 2)), profile)
    below_tip = (nose_tip_y - y) / 0.0065
    profile = np.where(tn > 1.0, identity.nose_projection * np.exp(-(np.clip(below_tip, 0, None) ** 2)), profile)
    dz += profile * np.exp(-0.5 * (x / sigma) ** 2)
    dz += 0.0035 * _gauss(x, y, 0.0, nose_tip_y + 0.002, 0.0055, 0.0045)
    alar_x = identity.nose_width * 0.36
    dz += 0.0075 * _gauss(ax, y, alar_x, nose_tip_y - 0.002, 0.0045, 0.0048)
    nostril = (((ax - identity.nose_width * 0.16) / 0.0036) ** 2 + ((y - (nose_tip_y - 0.0058)) / 0.0020) ** 2) < 1
    dz -= 0.0015 * nostril
    # Lips and chin.
    upper_t = 0.0068 * lf * np.sqrt(np.clip(1.0 - (x / mw) ** 2, 0, 1)) * (1.0 - 0.22 * np.exp(-((x / 0.0045) ** 2)))
    upper_t += 0.0012 * lf * np.exp(-(((ax - 0.0055) / 0.003) ** 2))
    lower_t = 0.0088 * lf * np.clip(1.0 - (x / (mw * 0.98)) ** 2, 0, 1) ** 0.6
    in_upper_lip = (y > mouth_y) & (y < mouth_y + upper_t)
    in_lower_lip = (y < mouth_y) & (y > mouth_y - lower_t)
    dz += 0.0045 * lf * _gauss(x, y, 0.0, mouth_y + 0.0032, mw * 0.62, 0.0042)
    dz += 0.0055 * lf * _gauss(x, y, 0.0, mouth_y - 0.0045, mw * 0.58, 0.0048)
    dz -= 0.0025 * _gauss(x, y, 0.0, mouth_y - lower_t.max() - 0.004, 0.014, 0.0035)
    dz += 0.0065 * _gauss(x, y, 0.0, chin_y + 0.016, 0.016, 0.012)
    dz -= 0.0012 * _gauss(x, y, 0.0, mouth_y + 0.011, 0.0028, 0.006)  # philtrum
    # Eyes: eyeball bulge inside the opening.
    u_eye = (ax - ex) / ew
    lid_shape = np.clip(1.0 - u_eye**2, 0.0, None)
    y_up = EYE_Y + hu * lid_shape
    y_lo = EYE_Y - hl * lid_shape
    in_eye = (np.abs(u_eye) < 1.0) & (y < y_up) & (y > y_lo)
    r_eye = np.sqrt(u_eye**2 + ((y - EYE_Y) / (hu + hl)) ** 2)
    dz += np.where(in_eye, 0.0035 * np.sqrt(np.clip(1 - r_eye**2, 0, 1)) - 0.0008, 0.0)
    dz += 0.0012 * np.exp(-0.5 * ((y - (y_up + 0.0025)) / 0.0018) ** 2) * (np.abs(u_eye) < 1.1)
    # Brows.
    v_brow = (ax - (ex - 0.019)) / 0.045  # 0 inner end → 1 outer end
    brow_low = brow_y - 0.002 + 0.0045 * np.sin(np.pi * np.clip(v_brow * 0.9 + 0.05, 0, 1))
    brow_th = identity.brow_thickness * (1.0 - 0.5 * np.clip(v_brow, 0, 1))
    in_brow = (v_brow > 0.0) & (v_brow < 1.0) & (y > brow_low) & (y < brow_low + brow_th)
    dz += 0.0008 * in_brow

    # --- Action units: displacement fields (dx, dy, dz). --------------------------------------------
    dx = np.zeros_like(x)
    dy = np.zeros_like(x)
    # Brows: AU1 inner raise, AU2 outer raise, AU4 lower + draw together, AU9 pulls inner brows down.
    g_inner = _gauss(ax, y, ex - 0.013, brow_y, 0.011, 0.016)
    g_outer = _gauss(ax, y, ex + 0.013, brow_y, 0.012, 0.016)
    g_mid = _gauss(ax, y, ex - 0.006, brow_y, 0.016, 0.013)
    dy += 0.0075 * a(1) * g_inner + 0.0075 * a(2) * g_outer - (0.0070 * a(4) + 0.0025 * a(9)) * g_mid
    dx -= sx * 0.0045 * a(4) * g_mid
    dz -= 0.0030 * a(4) * _gauss(x, y, 0.0, brow_y - 0.004, 0.0035, 0.008)
    dz += 0.0010 * (a(1) + a(4)) * _gauss(ax, y, ex - 0.014, brow_y + 0.004, 0.008, 0.008)
    # Forehead wrinkles for brow raises.
    raise_amount = 0.5 * (a(1) + a(2))
    dz += (
        0.0007
        * raise_amount
        * np.sin((y - brow_y) * 2 * np.pi / 0.0075)
        * _gauss(x, y, 0.0, brow_y + 0.02, 0.035, 0.01)
    )
    # Eyelids: upper lid (du) and lower lid (dl) displacements, stretched across the opening.
    du = 0.0042 * a(5) - 0.0026 * a(7) - 0.0014 * a(6) - 0.0016 * a(4) - 0.0012 * a(9) + 0.0008 * a(1)
    dl = 0.0024 * a(6) + 0.0026 * a(7) + 0.0012 * a(9) - 0.0006 * a(5)
    du = max(du, dl - (hu + hl) + 0.0012)
    frac = np.clip((y - y_lo) / np.maximum(y_up - y_lo, 1e-6), 0.0, 1.0)
    d_eye = np.where(
        y >= y_up,
        du * np.exp(-(y - y_up) / 0.007),
        np.where(y <= y_lo, dl * np.exp(-(y_lo - y) / 0.006), dl + (du - dl) * frac),
    )
    dy += d_eye * lid_shape * (np.abs(u_eye) < 1.0)
    # AU6 cheek raiser (+ crow's feet), AU9 nose wrinkler.
    g_cheek = _gauss(ax, y, 0.036, EYE_Y - 0.032, 0.017, 0.015)
    dy += 0.0050 * a(6) * g_cheek
    dz += 0.0045 * a(6) * g_cheek
    dz -= 0.0008 * a(6) * np.sin((y - EYE_Y) * 2 * np.pi / 0.006) * _gauss(ax, y, ex + ew + 0.006, EYE_Y, 0.003, 0.006)
    g_nose = _gauss(x, y, 0.0, EYE_Y - 0.012, 0.012, 0.013)
    dy += 0.0035 * a(9) * g_nose
    dz += 0.0012 * a(9) * np.sin((y - EYE_Y) * 2 * np.pi / 0.0055) * _gauss(x, y, 0.0, EYE_Y - 0.004, 0.008, 0.006)
    dx += sx * 0.0018 * a(9) * _gauss(ax, y, alar_x, nose_tip_y, 0.006, 0.006)
    # Nasolabial folds deepen with AU6/9/10/12.
    fold_x = alar_x + 0.6 * (mw - alar_x) + 0.004
    fold_y = (nose_tip_y + mouth_y) / 2 - 0.002
    dz -= (0.0012 * a(9) + 0.0014 * a(10) + 0.0018 * a(12)) * _gauss(ax, y, fold_x, fold_y, 0.0035, 0.010)
    # Mouth corners: AU12 up/out, AU14 in/back (dimple), AU15 down, AU20 out, AU23 in.
    for side in (1, -1):
        g_c = _gauss(x, y, side * mw * 0.9, mouth_y, 0.0105, 0.0095)
        w12 = a(12) * side_weight[side]
        w14 = a(14) * side_weight[side]
        cdx = 0.0080 * w12 - 0.0018 * w14 + 0.0012 * a(15) + 0.0085 * a(20) - 0.0025 * a(23)
        cdy = 0.0090 * w12 + 0.0018 * w14 - 0.0065 * a(15) - 0.0018 * a(20)
        cdz = -0.0025 * w12 - 0.0035 * w14 - 0.0012 * a(20)
        dx += side * cdx * g_c
        dy += cdy * g_c
        dz += cdz * g_c
        dz -= 0.0022 * w14 * _gauss(x, y, side * (mw + 0.006), mouth_y, 0.0028, 0.004)
    # Lip tightening (AU23) thins both lips towards the slit; lower-lip push (AU17).
    g_upper = _gauss(x, y, 0.0, mouth_y + 0.005, mw * 0.75, 0.005)
    g_lower = _gauss(x, y, 0.0, mouth_y - 0.006, mw * 0.75, 0.006)
    dy += -0.0022 * a(23) * g_upper + 0.0024 * a(23) * g_lower
    dz -= 0.0018 * a(23) * (g_upper + g_lower)
    dy += 0.0022 * a(17) * g_lower
    dz += 0.0022 * a(17) * g_lower
    g_chin = _gauss(x, y, 0.0, chin_y + 0.016, 0.02, 0.014)
    dy += 0.0035 * a(17) * g_chin
    dz += 0.0035 * a(17) * g_chin
    # Upper-lip raise (AU10, AU9) and lip parting (AU25) move the upper lip only.
    upper_only = (1.0 - s) * _gauss(x, y, 0.0, mouth_y + 0.004, mw * 0.8, 0.012)
    dy += (0.0050 * a(10) + 0.0022 * a(9) + 0.0012 * a(25) + 0.0016 * a(12)) * upper_only
    dz += 0.0012 * a(10) * upper_only
    # Jaw drop (AU26) and lip parting (AU25) move the lower lip and jaw.
    mouth_profile = np.sqrt(np.clip(1.0 - (x / mw) ** 2, 0.0, 1.0))
    depth_below = _smoothstep((mouth_y - y) / 0.022)
    jaw_falloff = np.exp(-((np.clip(ax - 0.02, 0, None) / 0.045) ** 2))
    in_mouth = _smoothstep((mw - ax) / 0.004)
    soft_below = _smoothstep((mouth_y + 0.008 - y) / 0.03)
    beta = in_mouth * s + (1.0 - in_mouth) * soft_below
    jaw_drop = 0.019 * a(26)
    lip_part = 0.0045 * a(25)
    dy_lower = -(jaw_drop * (mouth_profile + (1.0 - mouth_profile) * depth_below) * jaw_falloff)
    dy_lower -= lip_part * mouth_profile * _gauss(x, y, 0.0, mouth_y - 0.004, mw, 0.012)
    dy += beta * dy_lower
    dz += beta * 0.25 * np.abs(dy_lower) * -1.0

    # --- Assemble. -----------------------------------------------------------------------------------
    verts = np.stack([x0, y0, z0], axis=1)
    # Displace the front along +z (weighted so the sides are untouched) and in the image plane.
    verts[fi, 0] += dx * fw
    verts[fi, 1] += dy * fw
    verts[fi, 2] += dz * fw

    # Mouth cavity: push the slit rows back by a fraction of the local opening (grid: rows × cols).
    grid = verts.reshape(n_rows, n_cols, 3)
    gap = grid[first_slit + _N_SLIT - 1, :, 1] - grid[first_slit, :, 1]  # top slit row minus bottom
    mouth_cols = np.abs(grid[first_slit, :, 0]) < mw + 0.006
    depth_frac = _SLIT_DEPTH[::-1]  # rows are bottom → top
    cavity = np.clip(gap, 0.0, None) * 0.9 + 0.002 * (gap > 0.0012)
    grid[first_slit : first_slit + _N_SLIT, :, 2] -= (depth_frac[:, None] * cavity[None, :]) * mouth_cols[None, :]

    # Regions.
    rf = np.zeros(fi.size, dtype=np.uint8)
    rf[in_brow] = REGION_BROW
    rf[in_upper_lip | in_lower_lip] = REGION_LIPS
    rf[nostril] = REGION_NOSTRIL
    rf[in_eye] = REGION_EYE_WHITE
    rf[(np.abs(u_eye) < 1.05) & (y >= y_up) & (y < y_up + 0.0016)] = REGION_BROW  # lash line
    region[fi] = rf
    slit_region = np.broadcast_to(_SLIT_REGION[::-1, None], (_N_SLIT, n_cols)).copy()
    lip_x = np.abs(x0.reshape(n_rows, n_cols)[first_slit]) < mw
    slit_region[:, ~lip_x] = REGION_SKIN
    slit_region[:, ~(cos_t > 0.25)] = REGION_SKIN
    region.reshape(n_rows, n_cols)[first_slit : first_slit + _N_SLIT] = slit_region
    # Iris and pupil: eye-white material that now lies within the iris disc (the eyeball does not move).
    eye_white = np.flatnonzero(region == REGION_EYE_WHITE)
    ev = verts[eye_white]
    r_iris = 0.0058 * (0.9 + 0.1 * identity.eye_size)
    dist = np.hypot(np.abs(ev[:, 0]) - ex, ev[:, 1] - (EYE_Y + 0.0004))
    region[eye_white[dist < r_iris]] = REGION_IRIS
    region[eye_white[dist < r_iris * 0.42]] = REGION_PUPIL
    verts[eye_white[dist < r_iris], 2] += 0.0006
    # Hair: above the hairline (which drops towards the temples) and on the back of the head.
    theta_v = np.broadcast_to(np.abs(_THETA)[None, :], (n_rows, n_cols)).ravel()
    hairline = EYE_Y + identity.forehead_height + 0.004 * (x0 / half_w) ** 2
    hairline = hairline - 0.7 * identity.forehead_height * _smoothstep((theta_v - 0.9) / 1.1)
    hair = (y0 > hairline) & (y0 > chin_y + 0.02)
    region[hair] = REGION_HAIR
    hair_ramp = np.flatnonzero(y0 > hairline - 0.006)
    lift = 0.006 * _smoothstep((y0[hair_ramp] - hairline[hair_ramp] + 0.006) / 0.014)
    radial = verts[hair_ramp][:, [0, 2]]
    radial /= np.maximum(np.linalg.norm(radial, axis=1, keepdims=True), 1e-9)
    verts[hair_ramp, 0] += lift * radial[:, 0]
    verts[hair_ramp, 2] += lift * radial[:, 1]

    key = (n_rows, n_cols)
    if key not in _TRIANGLE_CACHE:
        _TRIANGLE_CACHE[key] = _grid_triangles(n_rows, n_cols)
    triangles = _TRIANGLE_CACHE[key]

    landmarks = _landmarks(verts, x0, y0, facing, identity, mouth_y, brow_y, first_slit, n_cols)
    return FaceMesh(
        vertices=verts.astype(np.float32),
        triangles=triangles,
        vertex_region=region,
        landmarks_3d=landmarks,
        vertex_normals=_grid_normals(verts.reshape(n_rows, n_cols, 3)).reshape(-1, 3),
    )


def _grid_normals(grid: np.ndarray) -> np.ndarray:
    """Outward unit normals of a (rows, cols, 3) grid surface by central differences, float32."""
    d_col = np.empty_like(grid)
    d_row = np.empty_like(grid)
    d_col[:, 1:-1] = grid[:, 2:] - grid[:, :-2]
    d_col[:, 0] = grid[:, 1] - grid[:, 0]
    d_col[:, -1] = grid[:, -1] - grid[:, -2]
    d_row[1:-1] = grid[2:] - grid[:-2]
    d_row[0] = grid[1] - grid[0]
    d_row[-1] = grid[-1] - grid[-2]
    normals = np.cross(d_col, d_row).astype(np.float32)
    normals /= np.maximum(np.linalg.norm(normals, axis=-1, keepdims=True), 1e-12)
    return normals


def _landmarks(
    verts: np.ndarray,
    x0: np.ndarray,
    y0: np.ndarray,
    facing: np.ndarray,
    identity: FaceIdentity,
    mouth_y: float,
    brow_y: float,
    first_slit: int,
    n_cols: int,
) -> dict[str, np.ndarray]:
    """Deformed positions of the vertices nearest to the landmarks' material points."""
    ex = identity.eye_spacing / 2.0
    mw = identity.mouth_width / 2.0
    chin_y = EYE_Y - identity.face_height
    targets = {
        "left_eye": (ex, EYE_Y),
        "right_eye": (-ex, EYE_Y),
        "nose_tip": (0.0, EYE_Y - identity.nose_length + 0.001),
        "chin": (0.0, chin_y + 0.004),
        "left_mouth_corner": (mw, mouth_y),
        "right_mouth_corner": (-mw, mouth_y),
        "left_brow": (ex, brow_y + 0.003),
        "right_brow": (-ex, brow_y + 0.003),
    }
    candidates = np.flatnonzero(facing)
    cx, cy = x0[candidates], y0[candidates]
    out: dict[str, np.ndarray] = {}
    for name, (tx, ty) in targets.items():
        best = candidates[np.argmin((cx - tx) ** 2 + (cy - ty) ** 2)]
        out[name] = verts[best].astype(np.float32)
    # Mouth centre: midway between the upper and lower lip edges at the middle column.
    mid_col = n_cols // 2
    top = verts[(first_slit + _N_SLIT - 1) * n_cols + mid_col]
    bottom = verts[first_slit * n_cols + mid_col]
    out["mouth_center"] = ((top + bottom) / 2.0).astype(np.float32)
    # The eyes are the iris centres, which stay put; use their material position on the surface.
    for name in ("left_eye", "right_eye"):
        out[name][1] = EYE_Y + 0.0004
    return {name: out[name] for name in LANDMARK_NAMES}
