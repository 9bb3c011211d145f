"""The tiny SegFormer every DirectSAM test uses (random weights, ~0.1 M parameters)."""

from __future__ import annotations

import pytest

TINY_SEGFORMER = {
    "variant": "b0",
    "pretrained": None,
    "warmup_steps": 1,
    "config_overrides": {
        "hidden_sizes": [8, 16, 32, 64],
        "depths": [1, 1, 1, 1],
        "num_attention_heads": [1, 1, 2, 2],
        "decoder_hidden_size": 32,
    },
}


@pytest.fixture
def tiny_model() -> dict:
    """``DirectSAMModule`` init arguments of a tiny randomly initialised SegFormer."""
    return {**TINY_SEGFORMER, "config_overrides": dict(TINY_SEGFORMER["config_overrides"])}
