"""File server for annotation data: pool builder, manifest, nginx/Python servers, verifier."""
