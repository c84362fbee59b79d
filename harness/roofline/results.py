"""What a roofline run found: per-layer cross-checks, validations, per-model analyses, the run."""

from __future__ import annotations

import dataclasses

from harness.roofline import counting, roofs, validate
from harness.roofline.analysis import BatchChoice, ModelResult


@dataclasses.dataclass
class CrossCheck:
    """One layer's FLOPs from the counter, the analytic formula and thop (None: unsupported)."""

    layer: str
    kind: str
    counter: int
    analytic: int
    thop: int | None

    @property
    def ok(self) -> bool:
        """All available counts agree exactly."""
        return self.counter == self.analytic and self.thop in (None, self.analytic)


@dataclasses.dataclass
class Validation:
    """Measured vs predicted time of one framework at one batch size on this CPU."""

    timing: validate.Timing
    predicted: float  # no-cache model, DRAM roof
    predicted_cache: float  # cache-aware model (L2/L3 roofs by working set)

    @property
    def ratio(self) -> float:
        """Measured (best of repeats, like the roofs) / predicted (no-cache DRAM model)."""
        return self.timing.best / self.predicted

    @property
    def ratio_cache(self) -> float:
        """Measured (best of repeats) / predicted (cache-aware model)."""
        return self.timing.best / self.predicted_cache


@dataclasses.dataclass
class ModelAnalysis:
    """Everything the report says about one model."""

    name: str
    description: str
    profiles: list[counting.LayerProfile]
    results: dict[str, list[ModelResult]]
    choices: dict[str, BatchChoice]
    checks: list[CrossCheck]
    check_batch: int
    validation: list[Validation]
    validation_note: str | None
    seconds: float


@dataclasses.dataclass
class RooflineRun:
    """A whole run: settings, devices, CPU measurement and per-model analyses."""

    dtype: str
    itemsize: int
    batches: list[int]
    devices: list[roofs.Device]
    cpu: roofs.CpuMeasurement | None
    models: list[ModelAnalysis]
    seconds: float
    command: str
