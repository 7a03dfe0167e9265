"""Prediction on raw recordings with a trained checkpoint, through the same preprocessing as the caches."""
