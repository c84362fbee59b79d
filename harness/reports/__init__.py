"""Markdown report writers (one module per report)."""
