"""Triton serving: model repository configs, the local materializer, the client, the demo."""
