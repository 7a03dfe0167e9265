"""LightningModules: multitask FER, the occluded-face restoration GAN, and both fine-tuned together."""

from multimodal_fer.tasks.joint_restoration_fer import JointRestorationFERTask
from multimodal_fer.tasks.multitask_fer import MultitaskFERTask
from multimodal_fer.tasks.occlusion_restoration import OcclusionRestorationTask

__all__ = ["JointRestorationFERTask", "MultitaskFERTask", "OcclusionRestorationTask"]
