"""LightningModules: multitask FER and the occluded-face restoration GAN."""

from multimodal_fer.tasks.multitask_fer import MultitaskFERTask
from multimodal_fer.tasks.occlusion_restoration import OcclusionRestorationTask

__all__ = ["MultitaskFERTask", "OcclusionRestorationTask"]
