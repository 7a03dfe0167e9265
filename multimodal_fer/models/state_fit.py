"""Whether a state dict fits a module's, described for an error message."""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor


def state_mismatch(expected: Mapping[str, Tensor], given: Mapping[str, Tensor], shown: int = 4) -> str:
    """What keeps ``given`` from loading strictly where ``expected`` is a module's own ``state_dict()``.

    Args:
        expected: the module's state dict.
        given: the weights to load.
        shown: keys listed per kind of problem before " …".

    Returns:
        ``""`` when every key is there with its shape; otherwise ``"missing: …; unexpected: …; wrong shape: …"``
        (the kinds present, wrong shapes as ``key (given) vs (expected)``).
    """
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    wrong = sorted(
        f"{key} {tuple(given[key].shape)} vs {tuple(value.shape)}"
        for key, value in expected.items()
        if key in given and given[key].shape != value.shape
    )
    return "; ".join(
        f"{label}: {', '.join(keys[:shown])}{' …' if len(keys) > shown else ''}"
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong))
        if keys
    )
