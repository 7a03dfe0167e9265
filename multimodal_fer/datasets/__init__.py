"""Data set adapters and generators: raw files (or a generator) → samples with labels."""
