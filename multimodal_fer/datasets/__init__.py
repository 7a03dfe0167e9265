"""Data set adapters: each data set's raw files (or generator) → samples with labels, through one contract."""

from multimodal_fer.datasets.affectnet import AffectNet
from multimodal_fer.datasets.affwild2 import AffWild2
from multimodal_fer.datasets.base import (
    DatasetAdapter,
    Listing,
    PhysioLayout,
    RawMedia,
    RawSample,
    Rejection,
    SampleError,
    SampleLabels,
)
from multimodal_fer.datasets.bosphorus import Bosphorus
from multimodal_fer.datasets.bp4d import BP4D
from multimodal_fer.datasets.bu3dfe import BU3DFE
from multimodal_fer.datasets.ckplus import CKPlus
from multimodal_fer.datasets.cremad import CREMAD
from multimodal_fer.datasets.deap import DEAP
from multimodal_fer.datasets.disfa import DISFA
from multimodal_fer.datasets.fer2013 import FER2013
from multimodal_fer.datasets.ferplus import FERPlus
from multimodal_fer.datasets.mahnob_hci import MAHNOBHCI
from multimodal_fer.datasets.protocols import (
    ExplicitSubjects,
    OfficialSplits,
    SplitProtocol,
    SubjectHoldout,
    SubjectKFold,
    SubjectPartitions,
    WithinSubjectKFold,
)
from multimodal_fer.datasets.rafdb import RAFDB
from multimodal_fer.datasets.ravdess import RAVDESS
from multimodal_fer.datasets.recola import RECOLA
from multimodal_fer.datasets.synthaffect.adapter import SynthAffect
from multimodal_fer.datasets.wesad import WESAD

__all__ = [
    "BU3DFE",
    "BP4D",
    "CREMAD",
    "DISFA",
    "DEAP",
    "WESAD",
    "MAHNOBHCI",
    "RAVDESS",
    "RECOLA",
    "FER2013",
    "FERPlus",
    "RAFDB",
    "AffWild2",
    "AffectNet",
    "Bosphorus",
    "CKPlus",
    "DatasetAdapter",
    "ExplicitSubjects",
    "Listing",
    "OfficialSplits",
    "PhysioLayout",
    "RawMedia",
    "RawSample",
    "Rejection",
    "SampleError",
    "SampleLabels",
    "SplitProtocol",
    "SubjectHoldout",
    "SubjectKFold",
    "SubjectPartitions",
    "SynthAffect",
    "WithinSubjectKFold",
]
