"""Callbacks: results files, restoration image grids and learning rates."""

from multimodal_fer.callbacks.lr_monitor import LearningRateMonitor
from multimodal_fer.callbacks.restoration_grid import RestorationGridLogger
from multimodal_fer.callbacks.results_writer import ResultsWriter

__all__ = ["LearningRateMonitor", "RestorationGridLogger", "ResultsWriter"]
