"""Write pickles as Python 2's ``cPickle`` (protocol 2) wrote them, for the fake DEAP and WESAD files.

Python 3's own pickler cannot do this: it writes strings as unicode and array buffers as ``_codecs.encode(...,
'latin1')`` calls, while the distributed files hold Python-2 ``str`` objects (``BINSTRING`` opcodes) for both,
and name numpy's reconstructor ``numpy.core.multiarray._reconstruct`` (numpy 1). Reading such bytes in Python 3
needs ``encoding='latin1'``; these fakes make the adapters prove that they read them so.

Supported values: dict, list, tuple, str (written as Python-2 ``str``, latin-1), bool, int, float, None and
C-contiguous numpy arrays of numeric dtypes.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import numpy as np

_PROTO2 = b"\x80\x02"
_MARK, _STOP, _NONE = b"(", b".", b"N"
_TRUE, _FALSE = b"\x88", b"\x89"
_EMPTY_DICT, _SETITEMS, _EMPTY_LIST, _APPENDS = b"}", b"u", b"]", b"e"
_EMPTY_TUPLE, _TUPLE, _TUPLES = b")", b"t", {1: b"\x85", 2: b"\x86", 3: b"\x87"}
_GLOBAL, _REDUCE, _BUILD = b"c", b"R", b"b"


def _string(value: bytes) -> bytes:
    """A Python-2 ``str``: SHORT_BINSTRING below 256 bytes, else BINSTRING."""
    if len(value) < 256:
        return b"U" + bytes([len(value)]) + value
    return b"T" + struct.pack("<I", len(value)) + value


def _int(value: int) -> bytes:
    if 0 <= value < 256:
        return b"K" + bytes([value])
    if -(2**31) <= value < 2**31:
        return b"J" + struct.pack("<i", value)
    raise ValueError(f"integer {value} is out of the range this writer supports")


def _tuple(items: list[bytes]) -> bytes:
    if not items:
        return _EMPTY_TUPLE
    if len(items) in _TUPLES:
        return b"".join(items) + _TUPLES[len(items)]
    return _MARK + b"".join(items) + _TUPLE


def _global(module: str, name: str) -> bytes:
    return _GLOBAL + module.encode() + b"\n" + name.encode() + b"\n"


def _dtype(dtype: np.dtype) -> bytes:
    """numpy 1's ``dtype.__reduce__``: ``dtype('f8', 0, 1)`` then the version-3 state."""
    order = dtype.byteorder if dtype.byteorder in "<>|" else ("<" if dtype.itemsize > 1 else "|")
    if dtype.byteorder == "=":
        order = "<"
    name = f"{dtype.kind}{dtype.itemsize}".encode()
    state = [_int(3), _string(order.encode()), _NONE, _NONE, _NONE, _int(-1), _int(-1), _int(0)]
    return _global("numpy", "dtype") + _tuple([_string(name), _int(0), _int(1)]) + _REDUCE + _tuple(state) + _BUILD


def _array(array: np.ndarray) -> bytes:
    """numpy 1's ``ndarray.__reduce__``: ``_reconstruct(ndarray, (0,), 'b')`` then (1, shape, dtype, False, data)."""
    array = np.ascontiguousarray(array)
    if array.dtype.kind not in "biuf":
        raise ValueError(f"arrays of dtype {array.dtype} are not supported")
    head = _global("numpy.core.multiarray", "_reconstruct")
    head += _tuple([_global("numpy", "ndarray"), _tuple([_int(0)]), _string(b"b")]) + _REDUCE
    shape = _tuple([_int(int(n)) for n in array.shape])
    state = _tuple([_int(1), shape, _dtype(array.dtype), _FALSE, _string(array.tobytes())])
    return head + state + _BUILD


def _value(value: Any) -> bytes:
    if value is None:
        return _NONE
    if isinstance(value, bool):
        return _TRUE if value else _FALSE
    if isinstance(value, int):
        return _int(value)
    if isinstance(value, float):
        return b"G" + struct.pack(">d", value)
    if isinstance(value, str):
        return _string(value.encode("latin1"))
    if isinstance(value, np.ndarray):
        return _array(value)
    if isinstance(value, tuple):
        return _tuple([_value(v) for v in value])
    if isinstance(value, list):
        return _EMPTY_LIST + (_MARK + b"".join(_value(v) for v in value) + _APPENDS if value else b"")
    if isinstance(value, dict):
        items = b"".join(_value(k) + _value(v) for k, v in value.items())
        return _EMPTY_DICT + (_MARK + items + _SETITEMS if value else b"")
    raise TypeError(f"cannot write {type(value).__name__} as a Python-2 pickle")


def python2_pickle_bytes(value: Any) -> bytes:
    """The bytes Python 2's ``cPickle.dumps(value, 2)`` gives for ``value`` (see the module docstring)."""
    return _PROTO2 + _value(value) + _STOP


def write_python2_pickle(path: Path, value: Any) -> None:
    """Write ``value`` to ``path`` as a Python-2 protocol-2 pickle (parent folders created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(python2_pickle_bytes(value))
