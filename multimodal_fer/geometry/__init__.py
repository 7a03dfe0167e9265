"""Cameras and point clouds: geometry shared by generated data, real 3-D data and preprocessing (bottom layer)."""
