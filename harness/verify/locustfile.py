"""Locust user for the load check of `harness verify inference` (run by harness.verify.load).

Each user POSTs one Open Inference Protocol request and sends the next as soon as the answer
arrives (no wait time), so N users keep N requests in flight. The request is set through the
environment (HARNESS_LOAD_*), because Locust loads this file in every master/worker process.
"""

from __future__ import annotations

import csv
import os
from typing import Any

from locust import FastHttpUser, constant, events, task
from locust.env import Environment
from locust.runners import WorkerRunner
from locust.stats import PERCENTILES_TO_REPORT, StatsCSV

BODY_FILE_ENV = "HARNESS_LOAD_BODY_FILE"
PATH_ENV = "HARNESS_LOAD_PATH"
TIMEOUT_ENV = "HARNESS_LOAD_TIMEOUT_S"
FINAL_PREFIX_ENV = "HARNESS_LOAD_FINAL_PREFIX"
REQUEST_NAME = "infer"

_BODY = b""
if os.environ.get(BODY_FILE_ENV):
    with open(os.environ[BODY_FILE_ENV], "rb") as fh:
        _BODY = fh.read()
_ENVIRONMENT: Environment | None = None


class InferUser(FastHttpUser):
    """One client with one request in flight at a time."""

    wait_time = constant(0)
    network_timeout = float(os.environ.get(TIMEOUT_ENV, "30"))
    connection_timeout = network_timeout

    @task
    def infer(self) -> None:
        """POST the body to /v2/models/<model>/infer; anything but 200 is a failure."""
        with self.client.post(
            os.environ.get(PATH_ENV, "/v2/models/model/infer"),
            data=_BODY,
            headers={"Content-Type": "application/json"},
            name=REQUEST_NAME,
            catch_response=True,
        ) as resp:
            if resp.status_code != 200:
                text = (resp.text or "")[:200] if resp.status_code else str(resp.error)
                resp.failure(f"HTTP {resp.status_code}: {text}")


@events.init.add_listener
def _keep_environment(environment: Environment, **_: Any) -> None:
    global _ENVIRONMENT
    _ENVIRONMENT = environment


@events.quit.add_listener
def _write_final_stats(**_: Any) -> None:
    # Locust's --csv files are a snapshot taken every second (locustio/locust#1806, #2299), so
    # the last second of the run is missing from them. The master (or the lone process) writes
    # the final statistics once more here, with Locust's own CSV writer and the same columns.
    prefix = os.environ.get(FINAL_PREFIX_ENV)
    env = _ENVIRONMENT
    if not prefix or env is None or isinstance(env.runner, WorkerRunner):
        return
    writer = StatsCSV(env, PERCENTILES_TO_REPORT)
    with open(f"{prefix}_stats.csv", "w", newline="") as fh:
        writer.requests_csv(csv.writer(fh))
    with open(f"{prefix}_failures.csv", "w", newline="") as fh:
        writer.failures_csv(csv.writer(fh))
