"""SynthAffect: a generated multimodal affect data set where one latent drives every modality.

Submodules import their heavy dependencies (open3d, neurokit2) lazily, so importing this package is cheap.
"""
