"""Figures drawn from caches and results files."""
