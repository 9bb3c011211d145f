"""Dataset readers of the real on-disk formats (numpy + pycocotools, no torch)."""
