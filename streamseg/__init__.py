"""streamseg: video-stream semantic segmentation for driving video."""
from __future__ import annotations

import os

# Before torch loads OpenMP: idle OpenMP threads otherwise busy-wait, starving the
# pipeline's decode/encode threads (measured: 4-6x slower torch-CPU inference on a
# loaded 2-core machine). A user's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
