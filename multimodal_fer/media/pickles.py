"""Reading the Python-2 pickles that physiological data sets ship (DEAP's ``sXX.dat``, WESAD's ``SX.pkl``).

Those files were written by Python 2 (``cPickle``): their strings and numpy array buffers are Python-2 ``str``,
which Python 3 reads only with ``encoding="latin1"`` (the same bytes, one character per byte; numpy turns them
back into the array's bytes). Unpickling may run any function a file names, so this reader resolves only the few
names a pickle of numpy arrays, dicts, lists and strings needs (numpy's array and scalar reconstructors, ``dtype``,
``ndarray``, ``copy_reg._reconstructor``, ``object``, ``OrderedDict``) and refuses every other one by name.
"""

from __future__ import annotations

import collections
import copyreg
import importlib
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from multimodal_fer.errors import DataError

#: numpy's private module that holds the reconstructors (``numpy.core.multiarray`` in numpy 1, which wrote the files).
_MULTIARRAY = "numpy._core.multiarray"


def _allowed() -> dict[tuple[str, str], Any]:
    multiarray = importlib.import_module(_MULTIARRAY)
    names: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("copy_reg", "_reconstructor"): copyreg._reconstructor,  # type: ignore[attr-defined]
        ("copyreg", "_reconstructor"): copyreg._reconstructor,  # type: ignore[attr-defined]
        ("__builtin__", "object"): object,
        ("builtins", "object"): object,
        ("collections", "OrderedDict"): collections.OrderedDict,
    }
    for module in ("numpy.core.multiarray", _MULTIARRAY):
        names[(module, "_reconstruct")] = multiarray._reconstruct
        names[(module, "scalar")] = multiarray.scalar
    return names


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """An unpickler that resolves numpy's array reconstructors and nothing that could run other code."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream, encoding="latin1")
        self._names = _allowed()

    def find_class(self, module: str, name: str) -> Any:
        """The allowed object, or a refusal naming what the file asked for."""
        try:
            return self._names[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"the file asks for {module}.{name}, which a pickle of numpy arrays does not need; refused"
            ) from None


def load_legacy_pickle(path: str | Path) -> Any:
    """Read a Python-2 pickle of numpy arrays, dicts and strings (latin-1), resolving numpy's names only.

    Args:
        path: the file.

    Returns:
        The unpickled object (strings as ``str``, arrays as numpy arrays).

    Raises:
        DataError: a missing, empty, cut-off or damaged file, or one that names another class or function.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} does not exist (or is not a file).")
    if path.stat().st_size == 0:
        raise DataError(f"{path} is empty (0 bytes).")
    try:
        with path.open("rb") as stream:
            return _NumpyOnlyUnpickler(stream).load()
    except (
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        TypeError,
        IndexError,
        KeyError,
        AttributeError,
        OverflowError,
    ) as error:
        raise DataError(f"{path} is not a readable pickle: {type(error).__name__}: {error}") from error
