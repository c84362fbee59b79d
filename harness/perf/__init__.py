"""perf_analyzer (install, run, parse), sweeps and latency budgets."""
