"""GeoCAM: see what convolutional networks look at when they tell cities apart."""

__version__ = "0.1.0"
