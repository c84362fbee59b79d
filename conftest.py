"""Root conftest: the harness pytest plugin and every service's fixtures."""

pytest_plugins = [
    "harness.testing.plugin",
    "harness.testing.fixtures_mlflow",
    "harness.testing.fixtures_triton",
    "harness.testing.fixtures_s3",
    "harness.testing.fixtures_files",
    "harness.testing.fixtures_embeddings",
    "tests.integration.oip.fixtures",
]
