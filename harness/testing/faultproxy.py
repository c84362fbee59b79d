"""Re-export: the TCP fault proxy now lives in harness.storage.faultproxy (`harness verify s3`
uses it, and package code must not import harness.testing)."""

from harness.storage.faultproxy import FaultProxy

__all__ = ["FaultProxy"]
