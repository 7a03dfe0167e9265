"""LightningModules: multitask FER (and, later, the restoration GAN)."""

from multimodal_fer.tasks.multitask_fer import MultitaskFERTask

__all__ = ["MultitaskFERTask"]
