"""Callbacks: results files, restoration image grids, learning rates and W&B test media."""

from multimodal_fer.callbacks.lr_monitor import LearningRateMonitor
from multimodal_fer.callbacks.restoration_grid import RestorationGridLogger
from multimodal_fer.callbacks.results_writer import ResultsWriter
from multimodal_fer.callbacks.wandb_test_logger import WandbTestLogger

__all__ = ["LearningRateMonitor", "RestorationGridLogger", "ResultsWriter", "WandbTestLogger"]
