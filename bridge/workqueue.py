"""A keyed work queue: a key waits once however often it is added, one worker handles a
key at a time, and a key that failed comes back after an exponential backoff."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger("bridge.workqueue")


class WorkQueue:
    def __init__(self, handler: Callable[[str], Awaitable[None]], *, workers: int = 16,
                 base_delay_s: float = 0.5, max_delay_s: float = 60.0) -> None:
        self.handler = handler
        self.workers = workers
        self.base_delay_s = base_delay_s
        self.max_delay_s = max_delay_s
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._waiting: set[str] = set()
        self._active: set[str] = set()
        self._again: set[str] = set()   # added while being handled: run once more after
        self._failures: dict[str, int] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}

    def __len__(self) -> int:
        return len(self._waiting) + len(self._timers)

    def add(self, key: str) -> None:
        if key in self._active:
            self._again.add(key)
        elif key not in self._waiting:
            self._waiting.add(key)
            self._queue.put_nowait(key)

    def add_after(self, key: str, delay_s: float) -> None:
        if key in self._timers:
            return
        loop = asyncio.get_running_loop()

        def fire() -> None:
            self._timers.pop(key, None)
            self.add(key)

        self._timers[key] = loop.call_later(delay_s, fire)

    async def _work(self) -> None:
        while True:
            key = await self._queue.get()
            self._waiting.discard(key)
            self._active.add(key)
            try:
                await self.handler(key)
                self._failures.pop(key, None)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                n = self._failures.get(key, 0)
                self._failures[key] = n + 1
                delay = min(self.base_delay_s * 2 ** n, self.max_delay_s)
                log.warning("work on %s failed (%s); again in %.1f s", key, e, delay)
                self.add_after(key, delay)
            finally:
                self._active.discard(key)
                if key in self._again:
                    self._again.discard(key)
                    self.add(key)

    async def run(self) -> None:
        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(self.workers):
                    group.create_task(self._work())
        finally:
            for timer in self._timers.values():
                timer.cancel()
            self._timers.clear()
