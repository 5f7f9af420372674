"""streamseg: video-stream semantic segmentation for driving video."""
from __future__ import annotations

__version__ = "0.1.0"
