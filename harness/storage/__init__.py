"""Object storage: a retrying S3 client, a local directory alike, and the checkpoint store."""
