"""Session fixtures for the files service (filled in by its issue)."""
