"""Object storage: a retrying S3 client and training checkpoints in a bucket."""
