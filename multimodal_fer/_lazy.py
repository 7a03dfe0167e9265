"""Lazy imports of heavy optional dependencies, with an install hint when one is missing.

Training from a prepared cache must import none of open3d, neurokit2 or wandb, so modules import them
through :func:`require` at the point of use.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from multimodal_fer.errors import MissingDependencyError

#: For each lazily imported module: the extra of pyproject.toml that brings it and the requirement that installs it
#: alone, at the version uv.lock pins (tests/test_packaging.py keeps both in step with pyproject.toml and uv.lock).
_EXTRAS: dict[str, tuple[str, str]] = {
    "open3d": ("3d", "open3d==0.20.0"),
    "neurokit2": ("physio", "neurokit2==0.3.0"),
    "edfio": ("physio", "edfio==0.4.18"),
    "wandb": ("wandb", "wandb==0.31.0"),
    "av": ("video", "av==18.1.0"),
    "soundfile": ("video", "soundfile==0.14.0"),
    "cv2": ("faces", "opencv-python-headless==4.14.0.94"),
    "sklearn": ("dev", "scikit-learn==1.9.1"),
}

_EXTRA_HINTS: dict[str, str] = {
    "open3d": " On Debian/Ubuntu open3d also needs the system library: apt-get install -y libusb-1.0-0.",
}


def require(module: str, purpose: str) -> ModuleType:
    """Import an optional module or raise an error that says how to install it.

    Args:
        module: importable module name, e.g. ``"open3d"``.
        purpose: what it is needed for, used in the message (e.g. ``"rendering SynthAffect depth maps"``).

    Returns:
        The imported module.

    Raises:
        MissingDependencyError: the module (or a system library it loads) is missing.
    """
    try:
        return importlib.import_module(module)
    except ImportError as error:
        if module in _EXTRAS:
            extra, package = _EXTRAS[module]
            how = (
                f"Install the extra '{extra}': pip install 'multimodal-fer[{extra}]' (from a clone: pip install -e "
                f"'.[{extra}]'), or {module} alone at the tested version: pip install {package}."
            )
        else:
            how = f"Install it with: pip install {module}."
        raise MissingDependencyError(
            f"{module} is needed for {purpose} but cannot be imported ({error}). {how}{_EXTRA_HINTS.get(module, '')}"
        ) from error
