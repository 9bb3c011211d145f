"""Data layer: readers, sampling, transforms, batches, datasets and data modules."""
