"""The S3 service in three backends with one shape (start, ready, url, stop).

- local: a managed child process on a free port: `minio server DIR` when a `minio` binary is on
  PATH, else moto's S3-compatible server (objects kept in memory). moto runs with authentication
  on (`storage.local.authentication`): its first few actions, unauthenticated, create an IAM user,
  its policy and its access key (harness.services.moto_server); every later request must be
  signed with that key. Credentials are generated per start and handed to clients through `env()`.
- docker: docker-compose.yml's `minio` service (its pinned image) through testcontainers (needs a
  Docker engine).
- external: S3_ENDPOINT_URL (or storage.endpoint_url) with AWS_ACCESS_KEY_ID/SECRET from env.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import sys
import urllib.error
import urllib.request
from pathlib import Path

from omegaconf import DictConfig

from harness.errors import ServiceError
from harness.paths import resolve
from harness.services.base import ContainerService, LocalProcess, free_port, wait_until
from harness.services.docker import ContainerSpec, container_spec
from harness.storage.s3 import Credentials, S3Client, S3Settings

log = logging.getLogger(__name__)

# What the bootstrap user may do: everything in S3, nothing else (IAM included).
_S3_ONLY_POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
}
# The unauthenticated actions moto allows at start: CreateUser, PutUserPolicy, CreateAccessKey.
_BOOTSTRAP_ACTIONS = 3


def _answers(url: str, timeout: float = 2.0) -> bool:
    """True when anything HTTP answers at `url` (S3 says 403 to anonymous requests)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout):  # noqa: S310 (local URLs)
            return True
    except urllib.error.HTTPError as exc:
        return exc.code < 500
    except (OSError, ValueError):
        return False


class _S3Base:
    """What every S3 backend offers on top of start/ready/url/stop: credentials and clients."""

    name = "s3"
    storage: DictConfig
    credentials: Credentials | None
    authenticates = True  # refuses unknown keys (MinIO, S3; moto only with authentication on)

    @property
    def url(self) -> str:  # pragma: no cover - overridden
        """Endpoint URL."""
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        """Environment for child processes (harness train, dvc) to reach this server."""
        out = {"S3_ENDPOINT_URL": self.url, "AWS_DEFAULT_REGION": str(self.storage.region)}
        if self.credentials is not None:
            out["AWS_ACCESS_KEY_ID"] = self.credentials.access_key_id
            out["AWS_SECRET_ACCESS_KEY"] = self.credentials.secret_access_key
        return out

    def settings(self, bucket: str | None = None) -> S3Settings:
        """Client settings for this server (config group `storage`, our endpoint/credentials)."""
        s = S3Settings.from_config(
            self.storage, endpoint_url=self.url, credentials=self.credentials
        )
        if bucket is not None:
            from dataclasses import replace

            s = replace(s, bucket=bucket)
        return s

    def client(self, bucket: str | None = None, *, ensure_bucket: bool = True) -> S3Client:
        """A retrying client on this server; the bucket is created if missing."""
        c = S3Client(self.settings(bucket))
        if ensure_bucket:
            c.ensure_bucket()
        return c


class LocalS3Service(_S3Base):
    """S3 as a managed local process (MinIO binary if on PATH, else moto) on a free port."""

    def __init__(self, storage: DictConfig, work_dir: str | os.PathLike[str]) -> None:
        self.storage = storage
        local = storage.local
        self.host = str(local.host)
        self.work_dir = Path(work_dir)
        minio = shutil.which("minio")
        choice = str(local.server)
        if choice not in {"auto", "moto", "minio"}:
            raise ServiceError(f"storage.local.server={choice!r}: expected auto, moto or minio")
        if choice == "minio" and not minio:
            raise ServiceError("storage.local.server=minio but no `minio` binary is on PATH")
        self.kind = "minio" if (choice == "minio" or (choice == "auto" and minio)) else "moto"
        self._minio = minio
        self.credentials: Credentials | None = None
        self._proc: LocalProcess | None = None
        self.startup_timeout = float(local.startup_timeout_s)
        # MinIO always authenticates; moto only when told to (then wrong keys are refused).
        self.authenticates = self.kind == "minio" or bool(local.get("authentication", True))

    @property
    def url(self) -> str:
        """Endpoint URL (valid after start)."""
        if self._proc is None:
            raise ServiceError("s3 (local) is not started")
        return self._proc.url

    @property
    def pid(self) -> int | None:
        """PID of the server process (tests pause it with SIGSTOP to play a stopped server)."""
        return self._proc.pid if self._proc is not None else None

    def start(self) -> None:
        """Start the server (idempotent) and wait until it answers."""
        if self._proc is not None and self._proc.running():
            return
        port = free_port(self.host)
        url = f"http://{self.host}:{port}"
        # Fresh random credentials per start: nothing hard-coded, nothing reused.
        self.credentials = _new_credentials()
        env = dict(os.environ)
        log_path = self.work_dir / "logs" / f"s3-{self.kind}-{port}.log"
        if self.kind == "minio":
            data_dir = resolve(str(self.storage.local.data_dir))
            data_dir.mkdir(parents=True, exist_ok=True)
            env["MINIO_ROOT_USER"] = self.credentials.access_key_id
            env["MINIO_ROOT_PASSWORD"] = self.credentials.secret_access_key
            argv = [self._minio, "server", str(data_dir), "--address", f"{self.host}:{port}"]
            argv += ["--console-address", f"{self.host}:{free_port(self.host)}"]
            health = f"{url}/minio/health/live"
        else:
            module = "harness.services.moto_server" if self.authenticates else "moto.server"
            argv = [sys.executable, "-m", module, "-H", self.host, "-p", str(port)]
            # moto spills every object above ~5 MB to a temp file; keep checkpoints in RAM.
            buffer_mb = float(self.storage.local.get("moto_key_buffer_mb", 0) or 0)
            if buffer_mb > 0:
                env["MOTO_S3_DEFAULT_KEY_BUFFER_SIZE"] = str(int(buffer_mb * 1024 * 1024))
            if self.authenticates:
                env["INITIAL_NO_AUTH_ACTION_COUNT"] = str(_BOOTSTRAP_ACTIONS)
            else:
                env.pop("INITIAL_NO_AUTH_ACTION_COUNT", None)
            # Not `/`: that is ListBuckets, an action that would spend the bootstrap budget and,
            # once authentication is on, is refused to an unsigned health probe.
            health = f"{url}/moto-api/"
        self._proc = LocalProcess(
            f"s3 ({self.kind})",
            argv,
            url=url,
            ready_check=lambda: _answers(health),
            log_path=log_path,
            env=env,
            startup_timeout=self.startup_timeout,
        )
        self._proc.start()
        if self.kind == "moto" and self.authenticates:
            try:
                self.credentials = _moto_bootstrap(url, str(self.storage.region))
            except Exception:
                self._proc.stop()
                raise

    def ready(self) -> bool:
        """True while the process runs and answers HTTP."""
        return self._proc is not None and self._proc.ready()

    def stop(self) -> None:
        """Stop the server process group; safe to call twice."""
        if self._proc is not None:
            self._proc.stop()

    def __enter__(self) -> LocalS3Service:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _new_credentials() -> Credentials:
    """Random credentials for one start of a server we run (nothing hard-coded or reused)."""
    return Credentials("harness" + secrets.token_hex(4), secrets.token_urlsafe(24))


def _moto_bootstrap(url: str, region: str) -> Credentials:
    """Spend moto's unauthenticated actions on an IAM user with S3 rights; return its key."""
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    # Any key signs the bootstrap calls; one attempt each, since a retry would spend an action.
    iam = boto3.session.Session().client(
        "iam",
        endpoint_url=url,
        region_name=region,
        aws_access_key_id="bootstrap",
        aws_secret_access_key="bootstrap",  # noqa: S106 - not a secret: ignored by moto
        config=Config(retries={"total_max_attempts": 1, "mode": "standard"}),
    )
    user = "harness-" + secrets.token_hex(4)
    try:
        iam.create_user(UserName=user)
        iam.put_user_policy(
            UserName=user, PolicyName="s3-only", PolicyDocument=json.dumps(_S3_ONLY_POLICY)
        )
        key = iam.create_access_key(UserName=user)["AccessKey"]
    except (BotoCoreError, ClientError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ServiceError(f"s3 (moto) at {url}: could not create its access key: {first}") from exc
    return Credentials(key["AccessKeyId"], key["SecretAccessKey"])


class DockerS3Service(ContainerService, _S3Base):
    """docker-compose.yml's `minio` service via testcontainers (only where an engine answers)."""

    name = "s3 (docker)"
    compose_service = "minio"
    startup_timeout = 60.0

    def __init__(self, storage: DictConfig) -> None:
        super().__init__()
        self.storage = storage
        self.port = int(storage.docker.port)
        # Generated per start; compose hands them to MinIO as MINIO_ROOT_USER/PASSWORD.
        self.credentials: Credentials | None = None

    def spec(self) -> ContainerSpec:
        """Compose's `minio` (image, command, environment) with this start's credentials."""
        if self.credentials is None:
            self.credentials = _new_credentials()
        env = {
            **os.environ,
            "AWS_ACCESS_KEY_ID": self.credentials.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.credentials.secret_access_key,
        }
        return container_spec(self.compose_service, env=env).require_ports(self.port)

    def start(self) -> None:
        """Start MinIO with credentials generated for this start."""
        if self._container is None:
            self.credentials = _new_credentials()
        super().start()

    def healthy(self, url: str) -> bool:
        """True when MinIO's liveness endpoint answers."""
        return _answers(f"{url}/minio/health/live")


class ExternalS3Service(_S3Base):
    """Somebody else's S3 endpoint: endpoint, region and credentials from config/env."""

    def __init__(self, storage: DictConfig, url: str | None = None) -> None:
        self.storage = storage
        endpoint = url or storage.get("endpoint_url") or os.environ.get("S3_ENDPOINT_URL")
        if not endpoint:
            raise ServiceError("s3 (external): set S3_ENDPOINT_URL or storage.endpoint_url")
        self._url = str(endpoint).rstrip("/")
        self.credentials = Credentials.from_env()

    @property
    def url(self) -> str:
        """Endpoint URL."""
        return self._url

    def start(self) -> None:
        """Nothing to start: fail clearly if nothing answers."""
        timeout = float(self.storage.external.ready_timeout_s)
        if not wait_until(self.ready, timeout=timeout, interval=0.5):
            raise ServiceError(f"s3 (external): no answer at {self._url} after {timeout:.0f}s")

    def ready(self) -> bool:
        """True when the endpoint answers HTTP."""
        return _answers(self._url + "/")

    def stop(self) -> None:
        """Nothing to stop."""


S3Service = LocalS3Service | DockerS3Service | ExternalS3Service


def make_s3_service(
    cfg: DictConfig, backend: str | None = None, url: str | None = None
) -> S3Service:
    """The S3 service for `backend` (default cfg.storage.backend); not started yet."""
    backend = backend or str(cfg.storage.backend)
    if backend == "local":
        return LocalS3Service(cfg.storage, resolve(str(cfg.paths.work_dir)))
    if backend == "docker":
        return DockerS3Service(cfg.storage)
    if backend == "external":
        return ExternalS3Service(cfg.storage, url)
    raise ServiceError(f"storage.backend={backend!r}: expected local, docker or external")
