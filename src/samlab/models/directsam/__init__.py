"""DirectSAM: a SegFormer predicting every object boundary in one pass, its training module and pseudo-label writer."""
