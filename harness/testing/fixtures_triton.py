"""Session fixtures for the triton service (filled in by its issue)."""
