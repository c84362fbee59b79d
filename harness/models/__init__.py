"""Model definitions: the digit CNN and the sentence-embedding wrapper."""
