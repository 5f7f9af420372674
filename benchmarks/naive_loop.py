"""The loop a user writes first, with no streamseg code: the yardstick of benchmarks/pipeline.py.

PyAV decode → cv2 resize + normalise → ONNX Runtime (default session, logits)
→ numpy argmax → cv2 nearest resize + palette blend → libx264 (default preset),
one frame at a time on one thread of control. Run as its own process so its
peak RSS is its own; prints one JSON line: {"frames", "seconds", "fps"}.

    python benchmarks/naive_loop.py MODEL.onnx CLIP.mp4 OUT.mp4 H W
"""
from __future__ import annotations

import json
import sys
import time

import av
import cv2
import numpy as np
import onnxruntime as ort

MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)
PALETTE = np.random.default_rng(0).integers(0, 256, (256, 3), dtype=np.uint8)


def main(model: str, clip: str, output: str, height: int, width: int) -> None:
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    start, frames = time.perf_counter(), 0
    with av.open(clip) as source, av.open(output, "w") as sink:
        video = source.streams.video[0]
        stream = sink.add_stream("libx264", rate=video.average_rate or 30)
        stream.width, stream.height, stream.pix_fmt = video.width, video.height, "yuv420p"
        for frame in source.decode(video):
            image = frame.to_ndarray(format="rgb24")
            small = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
            tensor = ((small.astype(np.float32) / 255.0 - MEAN) / STD).transpose(2, 0, 1)[None]
            logits = session.run(["logits"], {"images": np.ascontiguousarray(tensor)})[0]
            labels = logits[0].argmax(axis=0).astype(np.uint8)
            labels = cv2.resize(labels, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_NEAREST)
            blended = cv2.addWeighted(image, 0.5, PALETTE[labels], 0.5, 0.0)
            sink.mux(stream.encode(av.VideoFrame.from_ndarray(blended, format="rgb24")))
            frames += 1
        sink.mux(stream.encode(None))
    seconds = time.perf_counter() - start
    print(json.dumps({"frames": frames, "seconds": seconds, "fps": frames / seconds}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
