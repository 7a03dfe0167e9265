"""Lazy imports of heavy optional dependencies, with an install hint when one is missing.

Training from a prepared cache must import none of open3d, neurokit2 or wandb, so modules import them
through :func:`require` at the point of use.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from multimodal_fer.errors import MissingDependencyError

#: pip requirement (as pinned in pyproject.toml) for each lazily imported module.
_INSTALL_NAMES: dict[str, str] = {
    "open3d": "open3d==0.20.0",
    "neurokit2": "neurokit2==0.3.0",
    "wandb": "'wandb>=0.31,<0.32'",
    "cv2": "opencv-python-headless",
    "av": "av",
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
        package = _INSTALL_NAMES.get(module, module)
        raise MissingDependencyError(
            f"{module} is needed for {purpose} but cannot be imported ({error}). "
            f"Install it with: pip install {package}.{_EXTRA_HINTS.get(module, '')}"
        ) from error
