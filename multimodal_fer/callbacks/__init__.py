"""Callbacks: results files, (later) W&B media."""

from multimodal_fer.callbacks.results_writer import ResultsWriter

__all__ = ["ResultsWriter"]
