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


class NonFiniteLossError(MferError, FloatingPointError):
    """A training loss was NaN or infinite; the message names the step, the samples and the likely cause."""


class NoBestCheckpointError(MferError):
    """A fit whose monitored score was never finite has no best checkpoint to test."""


class CorruptCheckpointError(MferError):
    """A checkpoint holds non-finite weights (damaged, or saved after training diverged)."""


class CheckpointMismatchError(MferError):
    """A checkpoint that does not fit the model built from the config (other modalities, other label space)."""
