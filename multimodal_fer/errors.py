"""Exceptions with messages that name the problem and the fix."""


class MferError(Exception):
    """Base class of the package's own errors."""


class MissingDependencyError(MferError, ImportError):
    """An optional heavy dependency (open3d, neurokit2, wandb, ...) is not installed."""


class StaleCacheError(MferError):
    """A cache on disk was built from other settings or another format version."""


class CorruptCacheError(MferError):
    """A cache on disk is incomplete or damaged."""


class DataError(MferError, ValueError):
    """Input data with the wrong shape, range, sampling rate or content."""
