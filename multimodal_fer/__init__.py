"""multimodal-fer: multimodal facial expression recognition on PyTorch Lightning."""

__version__ = "0.1.0"
