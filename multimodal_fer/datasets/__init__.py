"""Data set adapters: each data set's raw files (or generator) → samples with labels, through one contract."""

from multimodal_fer.datasets.base import (
    DatasetAdapter,
    Listing,
    RawMedia,
    RawSample,
    Rejection,
    SampleError,
    SampleLabels,
)
from multimodal_fer.datasets.protocols import (
    ExplicitSubjects,
    OfficialSplits,
    SplitProtocol,
    SubjectHoldout,
    SubjectKFold,
)
from multimodal_fer.datasets.rafdb import RAFDB
from multimodal_fer.datasets.synthaffect.adapter import SynthAffect

__all__ = [
    "RAFDB",
    "DatasetAdapter",
    "ExplicitSubjects",
    "Listing",
    "OfficialSplits",
    "RawMedia",
    "RawSample",
    "Rejection",
    "SampleError",
    "SampleLabels",
    "SplitProtocol",
    "SubjectHoldout",
    "SubjectKFold",
    "SynthAffect",
]
