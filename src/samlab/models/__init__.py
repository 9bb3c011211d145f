"""Model families: one sub-package per family (``sam2``, ...) holding its torch parts and its LightningModule."""
