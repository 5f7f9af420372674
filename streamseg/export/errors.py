"""`ExportError`, in a module of its own: the CLI's error handler catches it without importing torch."""
from __future__ import annotations


class ExportError(RuntimeError):
    """An export step that failed; the message says what to do."""
