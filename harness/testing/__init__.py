"""pytest plugin: backend options and session-scoped service fixtures."""
