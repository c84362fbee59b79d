"""mlops-harness: a small MLOps stack that proves itself with its own test suite."""

__version__ = "0.1.0"
