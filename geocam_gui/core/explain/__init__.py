"""Explaining images: the CAM engine, the model store with the per-image explanation every view
and writer uses, and colormaps/blending. Builds on ``data`` and the shared core modules."""
