"""MASA: instance association learnt from SAM segments (adapter, box and embedding heads, tracker)."""
