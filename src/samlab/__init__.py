"""samlab: a PyTorch Lightning framework for training Segment-Anything-family models."""

__version__ = "0.1.0"
