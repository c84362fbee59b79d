"""Services share one shape: start, wait until healthy, expose a URL, stop cleanly."""

from harness.services.base import (
    ContainerService,
    ExternalService,
    LocalProcess,
    Service,
    docker_available,
    free_port,
    http_ok,
    running,
    wait_until,
)

__all__ = [
    "ContainerService",
    "ExternalService",
    "LocalProcess",
    "Service",
    "docker_available",
    "free_port",
    "http_ok",
    "running",
    "wait_until",
]
