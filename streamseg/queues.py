"""How one stage hands items to the next: a producer thread behind a small bounded queue.

Each pipeline stage iterates its input on its own thread (`threaded`), so
stages overlap while memory stays bounded; an error on a stage's thread is
raised in the consumer, and a consumer that stops early stops every stage.
"""
from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from .stats import StageTimer

T = TypeVar("T")
_END = object()


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


def threaded(items: Iterable[T], halt: threading.Event, maxsize: int,
             on_drop: Callable[[], None] | None = None) -> Iterator[T]:
    """Iterate `items` on a background thread and yield them here, through a bounded queue.

    With `on_drop`, an item the consumer has not taken yet is replaced by the
    next one (live sources: only the newest frame matters) and `on_drop` is called.
    """
    slots: queue.Queue = queue.Queue(maxsize)

    def put(item: object, droppable: bool) -> None:
        while not halt.is_set():
            try:
                slots.put(item, timeout=0.05)
                return
            except queue.Full:
                if droppable and on_drop is not None:
                    try:
                        slots.get_nowait()
                        on_drop()
                    except queue.Empty:
                        pass

    def produce() -> None:
        try:
            for item in items:
                put(item, droppable=True)
                if halt.is_set():
                    return
            put(_END, droppable=False)
        except BaseException as error:  # noqa: BLE001 — handed to the consumer, raised there
            put(_Failure(error), droppable=False)

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    finished = False
    try:
        while not halt.is_set():
            try:
                item = slots.get(timeout=0.05)
            except queue.Empty:
                continue
            if item is _END:
                finished = True
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item
    finally:
        if not finished:
            # Closed early or failed: stop every stage, and wait for this one's thread so
            # nobody closes a container while it is still decoding from it.
            halt.set()
            producer.join(timeout=30)


def timed(items: Iterable[T], timer: StageTimer) -> Iterator[T]:
    """Time how long each item takes to arrive (for generators doing the work lazily)."""
    iterator = iter(items)
    while True:
        with timer.time():
            item = next(iterator, _END)
        if item is _END:
            return
        yield item
