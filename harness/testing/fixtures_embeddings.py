"""Session fixtures for the embeddings service (filled in by its issue)."""
