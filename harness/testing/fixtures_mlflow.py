"""Session fixtures for the mlflow service (filled in by its issue)."""
