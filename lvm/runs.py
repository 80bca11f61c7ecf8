"""The training run folder (docs/ARCHITECTURE.md): what a run used and concluded, as JSON a person can read."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from lvm.atomic import write_json


def write_run(run_dir: str | Path, run: dict, comparison: dict | None = None, decision: dict | None = None) -> Path:
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / "run.json", {"created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                                      **run})
    if comparison is not None:
        write_json(run_dir / "comparison.json", comparison)
    if decision is not None:
        write_json(run_dir / "decision.json", decision)
    return run_dir
