"""Images stream: fetched and decoded a few at a time by a small thread pool, in source order
(the ingest stage and external sets)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from tgap.ingest.rows import Row

REMOTE_WORKERS = 16  # object GETs are latency-bound: overlap many
LOCAL_WORKERS = 4  # local reads are CPU-bound (PNG decode): about the core count


def _stream(
    rows: list[Row], load: Callable[[Row], np.ndarray], workers: int
) -> Iterator[tuple[Row, np.ndarray]]:
    """``(row, image)`` in ``rows`` order, with at most ``2 * workers`` images in flight."""
    pool = ThreadPoolExecutor(max_workers=workers)
    try:
        pending: deque = deque()
        it = iter(rows)
        for row in it:
            pending.append((row, pool.submit(load, row)))
            if len(pending) >= 2 * workers:
                break
        while pending:
            row, future = pending.popleft()
            image = future.result()
            nxt = next(it, None)
            if nxt is not None:
                pending.append((nxt, pool.submit(load, nxt)))
            yield row, image
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
