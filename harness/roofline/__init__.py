"""Roofline analysis: per-layer FLOPs/bytes, device roofs, best batch size, report."""
