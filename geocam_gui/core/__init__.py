"""The Qt-free core of GeoCAM: data, models, training, CAMs, rendering, export, analysis.

Nothing under this package imports PySide6 or pyqtgraph (enforced by tests/test_architecture.py).
"""
