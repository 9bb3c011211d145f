"""SAM (segment_anything) prompt fine-tuning: model building, prompts from ground truth, loss, Lightning module."""
