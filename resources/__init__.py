"""Icons and the stylesheet, shipped as package data (``geocam_gui.resources``)."""
