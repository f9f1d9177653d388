"""Measured interpretability: the analysis run, the model pass over a split, measures, the bias
probe, discriminative patches and the report. Built on ``explain`` (and ``train``'s metrics)."""
