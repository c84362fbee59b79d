"""DVC integration: the prepared data and the exported model live in an S3 remote.

The repository is a DVC project (`.dvc/config`: default remote `storage` at
s3://harness/dvcstore). Endpoint, bucket and credentials are applied at run time from the
`storage` config group and the environment, so nothing machine-specific is committed and a
fresh clone works against whichever S3 service is running. Everything goes through DVC's Python
API (`dvc.repo.Repo`, `DVCFileSystem`), never a `dvc` subprocess.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from harness import paths
from harness.errors import HarnessError

log = logging.getLogger(__name__)


def _root() -> Path:
    return Path(os.environ.get("HARNESS_ROOT", paths.ROOT))


def remote_url(cfg: DictConfig) -> str:
    """s3://<bucket>/<prefix> of the DVC remote (from the storage config group)."""
    return f"s3://{cfg.storage.bucket}/{str(cfg.storage.dvc.prefix).strip('/')}"


def remote_config(cfg: DictConfig) -> dict[str, Any] | None:
    """Run-time settings of the DVC remote (endpoint, region, credentials), or None if no endpoint.

    The dict is handed to DVC in memory only: credentials are never written to .dvc/config.
    """
    from harness.storage.s3 import Credentials

    endpoint = cfg.storage.get("endpoint_url") or os.environ.get("S3_ENDPOINT_URL")
    if not endpoint:
        return None
    conf: dict[str, Any] = {
        "url": remote_url(cfg),
        "endpointurl": str(endpoint),
        "region": str(cfg.storage.region),
    }
    creds = Credentials.from_env()
    if creds is not None:
        conf["access_key_id"] = creds.access_key_id
        conf["secret_access_key"] = creds.secret_access_key
    return conf


def targets(cfg: DictConfig) -> list[Path]:
    """The DVC-tracked outputs (storage.dvc.targets), absolute."""
    out = []
    for t in cfg.storage.dvc.targets:
        p = Path(str(t))
        out.append(p if p.is_absolute() else _root() / p)
    return out


def tracking_file(path: Path) -> Path | None:
    """The .dvc file that tracks `path` (itself or a parent directory), or None."""
    path = Path(path).absolute()
    root = _root().absolute()
    for p in (path, *path.parents):
        if p == root or root not in p.parents:
            break
        dvcfile = p.with_name(p.name + ".dvc")
        if dvcfile.is_file():
            return dvcfile
    return None


@contextmanager
def _repo(cfg: DictConfig) -> Iterator[Any]:
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    from dvc.repo import Repo

    conf = remote_config(cfg)
    if conf is None:
        raise HarnessError(
            "DVC remote needs an S3 endpoint: set S3_ENDPOINT_URL (or storage.endpoint_url=...)"
        )
    root = _root()
    if not (root / ".dvc").is_dir():
        raise HarnessError(f"{root} is not a DVC project (no .dvc/ directory)")
    name = str(cfg.storage.dvc.remote)
    try:
        repo = Repo(str(root), config={"core": {"remote": name}, "remote": {name: conf}})
    except Exception as exc:  # noqa: BLE001 - DVC raises many types
        raise HarnessError(f"cannot open the DVC project at {root}: {exc}") from exc
    try:
        yield repo
    finally:
        repo.close()


def _ensure_bucket(cfg: DictConfig) -> None:
    from harness.storage.s3 import client_from_config

    client_from_config(cfg).ensure_bucket()


def fetch_if_tracked(cfg: DictConfig, path: Path) -> bool:
    """Fetch `path` from the DVC remote if it is DVC-tracked; True when it now exists."""
    path = Path(path)
    dvcfile = tracking_file(path)
    if dvcfile is None:
        return path.exists()
    if remote_config(cfg) is None:
        # debug: every missing split file would say it; the caller says what it does instead
        log.debug("%s is DVC-tracked but no S3 endpoint is set: not fetching", path)
        return path.exists()
    import dvc.api

    from harness.io import atomic_path

    root = _root()
    name = str(cfg.storage.dvc.remote)
    rel = path.absolute().relative_to(root.absolute()).as_posix()
    chunk = 1 << 20
    try:
        # Streams from the remote without filling the cache; atomic: no partial file on failure.
        with (
            dvc.api.open(
                rel,
                repo=str(root),
                mode="rb",
                config={"core": {"remote": name}},
                remote=name,
                remote_config=remote_config(cfg),
            ) as src,
            atomic_path(path) as tmp,
            open(tmp, "wb") as out,
        ):
            while block := src.read(chunk):
                out.write(block)
    except Exception as exc:  # noqa: BLE001 - missing in the remote, unreachable, ...
        log.warning("could not fetch %s from the DVC remote (%s): %s", rel, dvcfile.name, exc)
        return path.exists()
    log.info("fetched %s from the DVC remote %s", rel, remote_url(cfg))
    return path.exists()


def track(cfg: DictConfig) -> list[str]:
    """`dvc add` the configured targets that exist (updates their .dvc files when changed)."""
    present = [t for t in targets(cfg) if t.exists()]
    if not present:
        return ["nothing to track: none of " + ", ".join(map(str, cfg.storage.dvc.targets))]
    root = _root()
    with _repo(cfg) as repo:
        try:
            repo.add([str(t) for t in present])  # absolute: DVC resolves against the CWD
        except Exception as exc:  # noqa: BLE001
            raise HarnessError(f"dvc add failed: {exc}") from exc
    return [f"tracked {t.relative_to(root)} ({t.relative_to(root)}.dvc)" for t in present]


def push(cfg: DictConfig) -> str:
    """Track the configured targets that exist, then push them to the S3 remote."""
    lines = track(cfg)
    _ensure_bucket(cfg)
    dvcfiles = [str(f) for t in targets(cfg) if (f := tracking_file(t))]
    with _repo(cfg) as repo:
        try:
            n = repo.push(targets=dvcfiles or None)
        except Exception as exc:  # noqa: BLE001
            raise HarnessError(f"dvc push to {remote_url(cfg)} failed: {exc}") from exc
    return "\n".join(lines + [f"pushed {n} file(s) to {remote_url(cfg)}"])


def pull(cfg: DictConfig) -> str:
    """Pull the configured targets' data from the S3 remote into the workspace."""
    root = _root()
    dvcfiles = [str(f) for t in targets(cfg) if (f := tracking_file(t))]
    if not dvcfiles:
        raise HarnessError("nothing is DVC-tracked: run `harness data push` first")
    with _repo(cfg) as repo:
        try:
            stats = repo.pull(targets=dvcfiles)
        except Exception as exc:  # noqa: BLE001
            raise HarnessError(f"dvc pull from {remote_url(cfg)} failed: {exc}") from exc
    fetched = stats.get("fetched", 0) if isinstance(stats, dict) else 0
    names = ", ".join(str(Path(f).relative_to(root)) for f in dvcfiles)
    return f"pulled {names} from {remote_url(cfg)} ({fetched} fetched from the remote)"
