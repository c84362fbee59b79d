"""Sentence embeddings (all-MiniLM-L6-v2): conversions, oracle, serving, drift comparison, perf."""
