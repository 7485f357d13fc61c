"""A bounded queue in front of the model, drained in micro-batches off the event loop.

Requests wait in an ``asyncio`` queue of at most ``max_queue`` items: a full queue is
refused at once (:class:`QueueFull`, HTTP 429 with ``Retry-After``) rather than letting
latency grow without bound. One worker task takes the first waiting item, then keeps
taking items for up to ``max_delay`` seconds or until ``max_batch`` are in hand, and runs
the batch in a single worker thread, so the event loop keeps accepting and refusing while
the model computes (torch's own threads still parallelise each batch). Each request has
a deadline: a request whose deadline passes while it waits is dropped from its batch
unrun, and its caller gets :class:`DeadlineExceeded` (HTTP 504).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any


class QueueFull(Exception):
    """The queue holds ``max_queue`` requests: try again after ``retry_after`` seconds."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"the request queue is full; retry after {retry_after:.0f} s")
        self.retry_after = retry_after


class DeadlineExceeded(Exception):
    """The request's deadline passed before its result was ready."""


@dataclass
class _Item:
    payload: Any
    deadline: float
    future: asyncio.Future[Any]


@dataclass
class BatchStats:
    """What the worker did: batches run, items run, the largest batch, items expired."""

    batches: int = 0
    items: int = 0
    largest: int = 0
    expired: int = 0
    sizes: dict[int, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        mean = self.items / self.batches if self.batches else 0.0
        return {"batches": self.batches, "items": self.items, "largest": self.largest,
                "mean_batch": round(mean, 2), "expired": self.expired}  # fmt: skip


class Batcher:
    """Micro-batching for ``run(payloads) -> results`` (one result per payload, in order).

    Args:
        run: called in a worker thread with a list of payloads.
        max_batch: most payloads per call; 1 turns batching off.
        max_delay: seconds the worker waits for more items after the first.
        max_queue: most waiting items; beyond it ``submit`` raises QueueFull.
    """

    def __init__(
        self,
        run: Callable[[Sequence[Any]], Sequence[Any]],
        max_batch: int = 32,
        max_delay: float = 0.005,
        max_queue: int = 256,
    ) -> None:
        if max_batch < 1 or max_queue < 1 or max_delay < 0:
            raise ValueError(
                f"Expected max_batch >= 1, max_queue >= 1, max_delay >= 0, received "
                f"{max_batch}, {max_queue}, {max_delay}"
            )
        self.run, self.max_batch, self.max_delay = run, max_batch, max_delay
        self.max_queue = max_queue
        self.stats = BatchStats()
        self._queue: asyncio.Queue[_Item] | None = None
        self._worker: asyncio.Task[None] | None = None
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="cnnlab-model")
        self._seconds_per_item = 0.01  # running estimate, for Retry-After

    @property
    def depth(self) -> int:
        """Requests waiting now."""
        return self._queue.qsize() if self._queue is not None else 0

    def start(self) -> None:
        """Start the worker on the running event loop."""
        self._queue = asyncio.Queue()
        self._worker = asyncio.get_running_loop().create_task(self._drain())

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        self.pool.shutdown(wait=True)

    async def submit(self, payload: Any, timeout: float) -> Any:
        """The result for ``payload``, within ``timeout`` seconds.

        Raises:
            QueueFull: ``max_queue`` requests are waiting.
            DeadlineExceeded: the result was not ready in time.
        """
        assert self._queue is not None, "Batcher.start() was not called"
        if self._queue.qsize() >= self.max_queue:
            raise QueueFull(max(1.0, self._queue.qsize() * self._seconds_per_item))
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Item(payload, time.monotonic() + timeout, future))
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            future.cancel()  # the worker skips it if it has not started
            raise DeadlineExceeded(f"no result within the {timeout:g} s deadline") from None

    async def _take(self) -> list[_Item]:
        assert self._queue is not None
        batch = [await self._queue.get()]
        closes = time.monotonic() + self.max_delay
        while len(batch) < self.max_batch:
            left = closes - time.monotonic()
            if left <= 0:
                while len(batch) < self.max_batch and not self._queue.empty():
                    batch.append(self._queue.get_nowait())
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), left))
            except TimeoutError:
                break
        return batch

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._take()
            now = time.monotonic()
            live = [i for i in batch if not i.future.done() and i.deadline > now]
            self.stats.expired += len(batch) - len(live)
            if not live:
                continue
            started = time.perf_counter()
            try:
                results = await loop.run_in_executor(self.pool, self.run, [i.payload for i in live])
            except Exception as e:  # the model failed: every caller of the batch hears
                for item in live:
                    if not item.future.done():
                        item.future.set_exception(e)
                continue
            per_item = (time.perf_counter() - started) / len(live)
            self._seconds_per_item = 0.8 * self._seconds_per_item + 0.2 * per_item
            self.stats.batches += 1
            self.stats.items += len(live)
            self.stats.largest = max(self.stats.largest, len(live))
            self.stats.sizes[len(live)] = self.stats.sizes.get(len(live), 0) + 1
            for item, result in zip(live, results, strict=True):
                if not item.future.done():
                    item.future.set_result(result)
