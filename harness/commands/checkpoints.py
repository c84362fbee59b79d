"""`harness checkpoints list|show|delete [KEY] [overrides]` and `serve`: checkpoints in S3.

The bucket and prefix come from configs/storage and configs/checkpoint; the endpoint and
credentials from S3_ENDPOINT_URL / AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or
storage.endpoint_url=...). `serve` runs the local S3 service until Ctrl-C and writes the
environment to reach it into a private file (the credentials are never printed).
"""

from __future__ import annotations

import argparse
import os
import signal
import time

from harness.commands.args import add_overrides
from harness.config import compose
from harness.errors import HarnessError

ACTIONS = ("list", "show", "delete", "serve")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the checkpoints sub-actions."""
    parser.add_argument(
        "action", choices=ACTIONS, help="list, show or delete checkpoints; serve S3"
    )
    add_overrides(parser)
    parser.epilog = (
        "KEY (for show/delete) is a checkpoint name from `list`, its full object key or an "
        "s3:// URI; show without KEY shows `latest`. Example: harness checkpoints delete "
        "20261122T003012345678Z-epoch0002.ckpt"
    )


def _split(items: list[str]) -> tuple[list[str], list[str]]:
    keys = [i for i in items if "=" not in i]
    return keys, [i for i in items if "=" in i]


def run(args: argparse.Namespace) -> int:
    """Run one action; errors are one line naming the object."""
    keys, overrides = _split(list(args.overrides))
    cfg = compose(overrides)
    if args.action == "serve":
        return _serve(cfg)
    from harness.storage.checkpoints import S3CheckpointStore

    store = S3CheckpointStore.from_config(cfg)
    if args.action == "list":
        if keys:
            raise HarnessError("`checkpoints list` takes no KEY")
        infos = {o.key: o for o in store.client.list_keys(store.prefix + "/")}
        latest = store.latest()
        names = store.list()
        print(f"{len(names)} checkpoint(s) under s3://{store.client.bucket}/{store.prefix}/")
        for name in names:
            info = infos.get(f"{store.prefix}/{name}")
            size = f"{info.size / 1e6:10.3f} MB" if info else ""
            mark = "  <- latest" if name == latest else ""
            print(f"{name}  {size}{mark}")
        return 0
    if len(keys) > 1:
        raise HarnessError(f"`checkpoints {args.action}` takes one KEY, got {len(keys)}")
    key = keys[0] if keys else None
    if args.action == "show":
        for k, v in store.describe(key).items():
            print(f"{k}: {v}")
        return 0
    if key is None:
        raise HarnessError("`checkpoints delete` needs a KEY (see `harness checkpoints list`)")
    uri = store.uri(key)
    store.delete(key)
    print(f"deleted {uri}; latest is now {store.latest() or 'none'}")
    return 0


def _serve(cfg) -> int:
    from harness.io import atomic_open
    from harness.paths import resolve
    from harness.services.base import running
    from harness.services.s3 import make_s3_service

    def _terminate(signum: int, frame: object) -> None:
        raise SystemExit(0)  # unwinds through `finally`: the server is stopped, not orphaned

    signal.signal(signal.SIGTERM, _terminate)
    svc = make_s3_service(cfg)
    with running(svc):
        svc.client(str(cfg.storage.bucket))
        env_file = resolve(str(cfg.paths.work_dir)) / "s3.env"
        with atomic_open(env_file, "w") as fh:
            os.fchmod(fh.fileno(), 0o600)
            fh.writelines(f"export {k}={v}\n" for k, v in svc.env().items())
        print(f"S3 ({cfg.storage.backend}) at {svc.url}, bucket {cfg.storage.bucket}")
        print(f"to use it from another shell: source {env_file}   (Ctrl-C stops the server)")
        while svc.ready():
            time.sleep(1.0)
        raise HarnessError("the S3 server exited")
