"""The Qt views of GeoCAM. Thin: they call the core and show its results."""
