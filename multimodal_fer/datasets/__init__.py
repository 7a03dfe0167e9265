"""Data set adapters: each data set's raw files (or generator) → samples with labels, through one contract."""

from multimodal_fer.datasets.affectnet import AffectNet
from multimodal_fer.datasets.affwild2 import AffWild2
from multimodal_fer.datasets.base import (
    DatasetAdapter,
    Listing,
    RawMedia,
    RawSample,
    Rejection,
    SampleError,
    SampleLabels,
)
from multimodal_fer.datasets.ckplus import CKPlus
from multimodal_fer.datasets.cremad import CREMAD
from multimodal_fer.datasets.fer2013 import FER2013
from multimodal_fer.datasets.protocols import (
    ExplicitSubjects,
    OfficialSplits,
    SplitProtocol,
    SubjectHoldout,
    SubjectKFold,
)
from multimodal_fer.datasets.rafdb import RAFDB
from multimodal_fer.datasets.ravdess import RAVDESS
from multimodal_fer.datasets.synthaffect.adapter import SynthAffect

__all__ = [
    "CREMAD",
    "RAVDESS",
    "FER2013",
    "RAFDB",
    "AffWild2",
    "AffectNet",
    "CKPlus",
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
