"""Keyframes + label propagation (issue 11): accuracy on every frame, flicker, and end-to-end fps.

For each model and keyframe interval N (and, for N != 1, each motion source),
the pipeline (`streamseg.pipeline.segment_frames`, the code `streamseg run`
uses) segments CamSeq01 and every output frame, keyframe or propagated, is
scored against its ground truth:
- mIoU and pixel accuracy over all frames (one confusion matrix; void ignored;
  `streamseg.metrics`, the definition `streamseg eval` uses);
- flicker: the share of pixels whose label changes between consecutive frames
  after motion compensation (labels of frame t-1 warped to t by a reference
  DIS flow, MEDIUM preset at full size, the same for every row; pixels whose
  flow leaves the frame are left out). The ground truth's own flicker is the floor;
- end-to-end fps of `streamseg run` (a subprocess per row, the whole CLI with
  decode and encode), unless --accuracy-only.

CamSeq01 = samples/camseq01.mp4, whose 101 frames are the val split's
images in sorted order; --data names the CamVid folder (val + valannot).
Writes temporal.md (the table) and, with speed, temporal.png (mIoU vs fps).

    python benchmarks/temporal.py --data /path/to/camvid [--models fcn] [--accuracy-only]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import av
import cv2
import numpy as np

from streamseg.classes import VOID_INDEX
from streamseg.metrics import metrics_from_confusion
from streamseg.pipeline import PipelineConfig, segment_frames
from streamseg.propagate import PropagateConfig
from streamseg.runtime import load_backend
from machine import cpu_line

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "samples" / "camseq01.mp4"


def ground_truth(data: Path, frames: int) -> np.ndarray:
    """`(N, H, W) uint8` val annotations, sorted by name (= the video's frame order)."""
    paths = sorted((data / "valannot").glob("*.png"))
    if len(paths) != frames:
        sys.exit(f"error: {data / 'valannot'} has {len(paths)} label images, the video {frames} frames")
    return np.stack([cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in paths])


def reference_flow(video: Path) -> list[np.ndarray]:
    """Per frame t >= 1: `(H, W, 2)` map into frame t-1 (DIS MEDIUM, full size), for the flicker measure."""
    with av.open(str(video)) as container:
        greys = [cv2.cvtColor(f.to_ndarray(format="rgb24"), cv2.COLOR_RGB2GRAY) for f in container.decode(video=0)]
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    ys, xs = np.mgrid[0:greys[0].shape[0], 0:greys[0].shape[1]].astype(np.float32)
    return [np.dstack([xs, ys]) + dis.calc(greys[t], greys[t - 1], None) for t in range(1, len(greys))]


def flicker(labels: np.ndarray, maps: list[np.ndarray]) -> float:
    """Share of in-frame pixels whose label differs from the previous frame's, motion-compensated."""
    changed = counted = 0
    height, width = labels.shape[1:]
    for t, points in enumerate(maps, start=1):
        inside = (points[..., 0] >= 0) & (points[..., 0] <= width - 1) & (points[..., 1] >= 0) & \
                 (points[..., 1] <= height - 1)
        before = cv2.remap(labels[t - 1], points[..., 0], points[..., 1], cv2.INTER_NEAREST)
        changed += int(((before != labels[t]) & inside).sum())
        counted += int(inside.sum())
    return changed / max(counted, 1)


def score(labels: np.ndarray, truth: np.ndarray, classes: int) -> dict:
    keep = truth != VOID_INDEX
    index = classes * truth[keep].astype(np.int64) + labels[keep]
    matrix = np.bincount(index, minlength=classes * classes).reshape(classes, classes)
    return metrics_from_confusion(matrix)


def accuracy_row(video: Path, backend, truth: np.ndarray, maps, interval, motion: str) -> dict:
    config = PipelineConfig(batch=4, propagate=PropagateConfig(interval, motion))
    frames = list(segment_frames(str(video), backend, config))
    labels = np.stack([f.labels for f in frames])
    keyframes = sum(f.keyframe for f in frames)
    metrics = score(labels, truth, backend.info.num_classes)
    return {"interval": interval, "motion": motion if interval != 1 else "-", "keyframes": keyframes,
            "frames_per_keyframe": len(frames) / keyframes, "mIoU": metrics["mIoU"],
            "pixel_accuracy": metrics["pixel_accuracy"], "flicker": flicker(labels, maps)}


def end_to_end_fps(video: Path, model: str, backend: str, interval, motion: str, folder: Path) -> float:
    stats = folder / "stats.json"
    command = [sys.executable, "-c", "from streamseg.cli import main; main()", "run", str(video),
               "-m", model, "--backend", backend, "--keyframe-interval", str(interval), "--motion", motion, "--batch", "4", "--no-progress",
               "--overwrite", "-o", str(folder / "out.mp4"), "--stats-json", str(stats)]
    subprocess.run(command, check=True, capture_output=True)
    return json.loads(stats.read_text())["fps_end_to_end"]




def table(rows: list[dict], truth_flicker: float) -> list[str]:
    lines = ["| model | N | motion | frames/keyframe | mIoU | Δ vs N=1 (pt) | pixel acc | flicker | fps |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        fps = f"{row['fps']:.1f}" if row.get("fps") else "-"
        lines.append(f"| {row['model']} | {row['interval']} | {row['motion']} | "
                     f"{row['frames_per_keyframe']:.2f} | {row['mIoU']:.4f} | {100 * row['delta']:+.2f} | "
                     f"{row['pixel_accuracy']:.4f} | "
                     f"{100 * row['flicker']:.2f}% | {fps} |")
    lines.append(f"\nGround truth's own flicker (the floor): {100 * truth_flicker:.2f}%.")
    return lines


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for (model, motion), marker in zip(sorted({(r["model"], r["motion"]) for r in rows}), "os^vD<>px"):
        chosen = [r for r in rows if (r["model"], r["motion"]) == (model, motion) and r.get("fps")]
        axes.plot([r["fps"] for r in chosen], [r["mIoU"] for r in chosen], marker, label=f"{model} {motion}")
        for r in chosen:
            axes.annotate(str(r["interval"]), (r["fps"], r["mIoU"]), fontsize=7)
    axes.set(xlabel="end-to-end fps (streamseg run)", ylabel="mIoU, every CamSeq01 frame")
    axes.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="CamVid folder with val/ and valannot/")
    parser.add_argument("--video", type=Path, default=SAMPLE)
    parser.add_argument("--models", default="fcn,unet,deeplab")
    parser.add_argument("--intervals", default="1,2,3,5,8,auto")
    parser.add_argument("--motion", default="mv,flow")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--accuracy-only", action="store_true", help="skip the end-to-end fps runs")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "results")
    args = parser.parse_args()
    intervals = [v if v == "auto" else int(v) for v in args.intervals.split(",")]
    print(f"{cpu_line()}; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")
    maps = reference_flow(args.video)
    truth = ground_truth(args.data, len(maps) + 1)
    truth_flicker = flicker(truth, maps)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for model in args.models.split(","):
            backend = load_backend(model, args.backend, "cpu", batch=4)[0]
            plans = [(n, m) for n in intervals for m in (args.motion.split(",") if n != 1 else ["auto"])]
            for interval, motion in plans:
                row = {"model": model, **accuracy_row(args.video, backend, truth, maps, interval, motion)}
                if not args.accuracy_only:
                    row["fps"] = end_to_end_fps(args.video, model, args.backend, interval, motion, Path(folder))
                base = next(r for r in rows + [row] if r["model"] == model and r["interval"] == 1)
                row["delta"] = row["mIoU"] - base["mIoU"]
                rows.append(row)
                print(table([row], truth_flicker)[2], flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "temporal.md").write_text("\n".join(table(rows, truth_flicker)) + "\n", encoding="utf-8")
    if not args.accuracy_only:
        plot(rows, args.out / "temporal.png")
    print("\n".join(table(rows, truth_flicker)))


if __name__ == "__main__":
    main()
