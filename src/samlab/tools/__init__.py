"""Dataset tools behind ``samlab data ...``: conversions, frame extraction."""
