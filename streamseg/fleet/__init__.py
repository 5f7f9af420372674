"""Fleet processing: segment thousands of clips on a Ray cluster (`pip install 'streamseg[ray]'`).

A clip is the unit of work. Long-lived Ray actors load the model once and
run the ordinary single-clip pipeline; outputs go under one folder every
worker can reach (same path on every machine), written atomically, and a
JSON Lines manifest records every clip. Re-running skips what is complete.

Python API::

    from streamseg.fleet import FleetConfig, WorkerConfig, run_fleet
    from streamseg.jobs import ModelConfig
    report = run_fleet("clips/**/*.mp4", "out/", FleetConfig(WorkerConfig(ModelConfig("unet"))), address="auto")
    report.done, report.failed, report.skipped
"""
from __future__ import annotations

from .driver import FleetConfig, FleetError, FleetReport, connect, run_fleet
from .manifest import MANIFEST, Clip, Row, plan_clips, read_manifest
from .worker import WorkerConfig

__all__ = ["MANIFEST", "Clip", "FleetConfig", "FleetError", "FleetReport", "Row", "WorkerConfig", "connect",
           "plan_clips", "read_manifest", "run_fleet"]
