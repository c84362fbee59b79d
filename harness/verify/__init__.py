"""Verify deployments the harness did not build: the library behind `harness verify`.

The checks themselves are pytest modules in `harness.conformance`; this package holds what they
use (references, probes, load runners) and the runner that executes them and prints a summary.
"""
