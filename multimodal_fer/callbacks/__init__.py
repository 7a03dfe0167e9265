"""Callbacks: results files and restoration image grids."""

from multimodal_fer.callbacks.restoration_grid import RestorationGridLogger
from multimodal_fer.callbacks.results_writer import ResultsWriter

__all__ = ["RestorationGridLogger", "ResultsWriter"]
