"""Exports for publications: overlays at native resolution, figures, provenance sidecars. Built on
``explain``."""
