"""Data: folder layouts, the dataset index with grouped splits, the audit, robust decoding, the
decoded-image cache, and ``demo`` (the procedural two-cities generator). Builds only on the shared
core modules."""
