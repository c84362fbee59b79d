"""Checkpoint save+load throughput vs raw put_object/get_object of the same bytes, one run.

The store's path includes everything a real save/load does: serialization, sha256, reading the
`latest` pointer, the no-overwrite check, the (multipart) upload, the pointer write and pruning;
then the pointer read, the (ranged) download, verification and deserialization. The baseline
sends the same serialized bytes with one put_object and reads them with one get_object through
the same boto3 client, to the same server. Rounds alternate; the best round of each side is
compared (the build machine is shared: the minimum is the least disturbed measurement).

The store runs with the configured multipart threshold (asserted) and, for the record, with
multipart forced (16 MiB parts): moto completes multipart uploads by concatenating and
re-storing the parts, which costs it more than a single PUT.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace

import pytest
import torch

from harness.config import compose
from harness.paths import resolve
from harness.storage.checkpoint_format import serialize
from harness.storage.checkpoints import S3CheckpointStore
from harness.storage.s3 import S3Client

pytestmark = pytest.mark.perf
MB = 1024 * 1024


def _state(size_mb: int) -> dict:
    torch.manual_seed(0)
    n = size_mb * MB // 4 // 4
    return {
        "format_version": 1,
        "model": {f"layer{i}.weight": torch.rand(n) for i in range(4)},
        "optimizer": {"state": {}, "param_groups": [{"lr": 1e-3}]},
        "scheduler": None,
        "config": {"model": {}},
        "epoch": 1,
        "global_step": 1,
        "rng": {"torch": torch.get_rng_state()},
    }


def _timed_round_trip(store: S3CheckpointStore, state: dict) -> float:
    """Seconds for one save + load through `store`; the loaded weights must equal the saved."""
    t0 = time.perf_counter()
    loaded = store.load(store.save(state, epoch=1))
    seconds = time.perf_counter() - t0
    assert torch.equal(loaded["model"]["layer3.weight"], state["model"]["layer3.weight"])
    return seconds


def test_checkpoint_throughput_vs_raw(s3_service, s3_bucket, s3_prefix):
    overrides = [
        f"storage.bucket={s3_bucket}",
        "checkpoint.keep_last=1",
        "checkpoint.compatible_groups=[]",
    ]
    cfg = compose([*overrides, f"checkpoint.prefix={s3_prefix}/perf"])
    p = cfg.storage.perf
    client = s3_service.client(s3_bucket)
    store = S3CheckpointStore.from_config(cfg, client=client)
    forced = S3Client(replace(client.settings, multipart_threshold=16 * MB, part_size=16 * MB))
    store_mp = S3CheckpointStore.from_config(
        compose([*overrides, f"checkpoint.prefix={s3_prefix}/perf-mp"]), client=forced
    )
    state = _state(int(p.state_mb))
    data, _ = serialize(state)
    size = len(data)
    assert size >= p.state_mb * MB
    raw = client.raw
    raw_key = f"{s3_prefix}/raw.bin"
    raw_times, store_times, mp_times = [], [], []
    for _ in range(int(p.rounds)):
        t0 = time.perf_counter()
        raw.put_object(Bucket=s3_bucket, Key=raw_key, Body=data)
        body = raw.get_object(Bucket=s3_bucket, Key=raw_key)["Body"].read()
        raw_times.append(time.perf_counter() - t0)
        assert len(body) == size
        del body
        store_times.append(_timed_round_trip(store, state))
        mp_times.append(_timed_round_trip(store_mp, state))
    raw_mbs = size / MB / min(raw_times)
    store_mbs = size / MB / min(store_times)
    ratio = store_mbs / raw_mbs
    mp_mbs = size / MB / min(mp_times)
    multipart = size >= store.client.settings.multipart_threshold
    result = {
        "server": getattr(s3_service, "kind", type(s3_service).__name__),
        "bytes": size,
        "raw_put_get_MBps": round(raw_mbs, 1),
        "checkpoint_save_load_MBps": round(store_mbs, 1),
        "ratio": round(ratio, 3),
        "store_uses_multipart": multipart,
        "forced_multipart_save_load_MBps": round(mp_mbs, 1),
        "forced_multipart_ratio": round(mp_mbs / raw_mbs, 3),
        "raw_s": [round(t, 3) for t in raw_times],
        "store_s": [round(t, 3) for t in store_times],
        "forced_multipart_s": [round(t, 3) for t in mp_times],
        "threshold_mb": cfg.storage.multipart.threshold_mb,
        "part_size_mb": cfg.storage.multipart.part_size_mb,
        "max_concurrency": cfg.storage.multipart.max_concurrency,
    }
    out = resolve(str(cfg.paths.work_dir)) / "perf" / "s3_checkpoint_throughput.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result))
    assert ratio >= float(p.min_ratio), result
