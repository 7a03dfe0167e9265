"""Format-faithful fake BU-3DFE: VRML 2.0 ``_F3D.wrl`` face meshes, ``.bnd`` landmark files, and traps.

A mesh is the fake Bosphorus face surface (:func:`data.bosphorus.generate.face_height`, millimetres, +z towards
the viewer) sampled on a grid, triangulated and written the way BU-3DFE's files are laid out: a ``#VRML V2.0 utf8``
header, a Transform holding one Shape whose IndexedFaceSet has ``coord Coordinate { point [ ... ] }`` with one
vertex per line (comma-terminated, the last without comma), ``coordIndex`` triangles ending in -1, and a
``TextureCoordinate { point [ u v, ... ] }`` block with ``texCoordIndex`` that the reader must not mistake for
vertices.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from data.bosphorus.generate import face_height

#: BU-3DFE expression codes → the shape of the fake surface.
SHAPES = {"NE": "N", "AN": "ANGER", "DI": "DISGUST", "FE": "FEAR", "HA": "HAPPY", "SA": "SADNESS", "SU": "SURPRISE"}
NAMES = {"NE": "neutral", "AN": "anger", "DI": "disgust", "FE": "fear", "HA": "happy", "SA": "sad", "SU": "surprise"}


def face_mesh(shape: str, width: float, step: float = 5.0) -> tuple[np.ndarray, np.ndarray]:
    """(V, 3) mm vertices and (T, 3) triangles of the fake face on a ``step`` mm grid (off-face cells dropped)."""
    xs = np.arange(-width, width + step, step)
    ys = np.arange(1.35 * width, -1.35 * width - step, -step)
    xx, yy = np.meshgrid(xs, ys)
    z = face_height(xx, yy, shape, width)
    valid = np.isfinite(z)
    index = -np.ones(z.shape, dtype=np.int64)
    index[valid] = np.arange(int(valid.sum()))
    vertices = np.column_stack([xx[valid], yy[valid], z[valid]])
    a, b, c, d = index[:-1, :-1], index[:-1, 1:], index[1:, :-1], index[1:, 1:]
    cells = (a >= 0) & (b >= 0) & (c >= 0) & (d >= 0)
    triangles = np.concatenate(
        [np.stack([a[cells], c[cells], b[cells]], axis=1), np.stack([b[cells], c[cells], d[cells]], axis=1)]
    )
    return vertices, triangles


def wrl_text(vertices: np.ndarray, triangles: np.ndarray | None) -> str:
    """A BU-3DFE-style VRML 2.0 file; ``triangles`` None leaves the face list out (a point set)."""
    lines = ["#VRML V2.0 utf8", "", "Transform {", "  children [", "    Shape {", "      appearance Appearance {",
             "        texture ImageTexture { url \"face.bmp\" }", "      }", "      geometry IndexedFaceSet {",
             "        coord Coordinate {", "          point ["]  # fmt: skip
    rows = [f"            {x:.4f} {y:.4f} {z:.4f}" for x, y, z in vertices]
    lines += [row + "," for row in rows[:-1]] + [rows[-1], "          ]", "        }"]
    uv = (vertices[:, :2] - vertices[:, :2].min(axis=0)) / np.ptp(vertices[:, :2], axis=0)
    lines += ["        texCoord TextureCoordinate {", "          point ["]
    lines += [f"            {u:.5f} {v:.5f}," for u, v in uv] + ["          ]", "        }"]
    if triangles is not None:
        lines.append("        coordIndex [")
        lines += [f"          {i}, {j}, {k}, -1," for i, j, k in triangles]
        lines.append("        ]")
        lines.append("        texCoordIndex [")
        lines += [f"          {i}, {j}, {k}, -1," for i, j, k in triangles]
        lines.append("        ]")
    lines += ["      }", "    }", "  ]", "}"]
    return "\n".join(lines) + "\n"


def bnd_text(vertices: np.ndarray, count: int = 83) -> str:
    """``count`` landmark lines ``<index>\\t\\t<x>\\t\\t<y>\\t\\t<z>`` on evenly spread vertices."""
    chosen = np.linspace(0, len(vertices) - 1, count).astype(int)
    rows = zip(chosen, vertices[chosen], strict=True)
    return "".join(f"{i}\t\t{x:.4f}\t\t{y:.4f}\t\t{z:.4f}\n" for i, (x, y, z) in rows)


#: (subject, code, trap) of every fake model; code is <EX><II><RR>.
MODELS = [
    *[(s, "NE00WH", None) for s in ("F0001", "F0002", "F0003", "M0001", "M0002", "M0003")],
    *[(s, "HA04AE", None) for s in ("F0001", "F0002", "F0003", "M0001", "M0002", "M0003")],
    *[(s, "SU03BL", None) for s in ("F0001", "F0003", "M0002")],
    ("F0001", "AN01WH", None),
    ("M0003", "SA02LA", None),
    ("F0002", "DI02WH", "no faces"),
    ("M0001", "FE03WH", "few landmarks"),
    ("F0003", "SA05WH", None),  # intensity 05 does not exist
    ("M0002", "XX01WH", None),  # unknown expression code
    ("M0003", "NE01IN", None),  # neutral must be 00
]


def write_fake_bu3dfe(root: Path, step: float = 5.0) -> dict:
    """Write the fake data set under ``root``; return what preparing it must give.

    Returns:
        ``samples`` {key: (None, class name)}, ``failures`` {source: reason}, ``rejections`` {source: reason},
        ``intensity`` {key: level} and ``subjects``.
    """
    widths = {"F0001": 70.0, "F0002": 68.0, "F0003": 72.0, "M0001": 76.0, "M0002": 78.0, "M0003": 74.0}
    samples, intensity = {}, {}
    for subject, code, trap in MODELS:
        folder = root / subject
        folder.mkdir(parents=True, exist_ok=True)
        stem = f"{subject}_{code}_F3D"
        vertices, triangles = face_mesh(SHAPES.get(code[:2], "N"), widths[subject], step)
        (folder / f"{stem}.wrl").write_text(wrl_text(vertices, None if trap == "no faces" else triangles))
        (folder / f"{stem}.bnd").write_text(bnd_text(vertices, 12 if trap == "few landmarks" else 83))
        if trap is None and code[:2] in NAMES and (code[2:4] == "00") == (code[:2] == "NE") and code[2:4] <= "04":
            samples[stem] = (None, NAMES[code[:2]])
            intensity[stem] = int(code[2:4])
    (root / "F0001" / "F0001_AN01WH_RAW.wrl").write_text("#VRML V2.0 utf8\n")  # other file types are not listed
    (root / "F0001" / "F0001_AN01WH_F2D.bmp").write_bytes(b"BM")
    return {
        "samples": samples,
        "failures": {
            "F0002/F0002_DI02WH_F3D.wrl": "VRML mesh without faces",
            "M0001/M0001_FE03WH_F3D.wrl": "too few landmarks",
        },
        "rejections": {
            "F0003/F0003_SA05WH_F3D.wrl": "intensity code outside 01-04 (00 for neutral)",
            "M0002/M0002_XX01WH_F3D.wrl": "file name not <ID>_<EX><II><RR>_F3D.wrl",
            "M0003/M0003_NE01IN_F3D.wrl": "intensity code outside 01-04 (00 for neutral)",
        },
        "intensity": intensity,
        "subjects": set(widths),
    }
