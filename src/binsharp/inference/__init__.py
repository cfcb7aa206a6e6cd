"""Inference: everything that pan-sharpens an image (the Fuser protocol and its implementations, tiling)."""
