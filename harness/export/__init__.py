"""Model export: ONNX (parity-checked against PyTorch)."""
