"""Evaluation metrics as torchmetrics Metrics (video object segmentation J&F, ...) and the scores behind them."""
