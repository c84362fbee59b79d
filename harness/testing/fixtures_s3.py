"""Session fixtures for the s3 service (filled in by its issue)."""
