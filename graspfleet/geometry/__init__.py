"""Lie-group geometry shared by actors (NumPy) and learner (PyTorch)."""
