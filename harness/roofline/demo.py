"""Demo: the roofline report for both served models (short batch list, real measurements)."""

from __future__ import annotations

from omegaconf import DictConfig

from harness.roofline.runner import run_roofline


def run_demo(cfg: DictConfig) -> list[str]:
    """Write reports/roofline.md for the CNN and MiniLM and return one line per model/device."""
    run, path = run_roofline(cfg, "harness demo (roofline)")
    lines = [f"roofline: report {path} ({run.seconds:.0f} s)"]
    for a in run.models:
        for d in run.devices:
            c = a.choices[d.key]
            lines.append(
                f"roofline: {a.name} on {d.label}: ridge {d.ridge:.1f} FLOP/B, best batch "
                f"{c.best}, saturates at {c.chosen}"
            )
        for v in a.validation:
            lines.append(
                f"roofline: {a.name} {v.timing.framework} b={v.timing.batch} measured/predicted "
                f"{v.ratio:.2f} (cache-aware {v.ratio_cache:.2f})"
            )
    return lines
