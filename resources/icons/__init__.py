"""Application and action icons (package data)."""
