"""Container deployment: offline validation of docker-compose.yml, workflows and model configs."""
