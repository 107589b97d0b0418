"""Group commit: the transactions of concurrent callers merged into one.

Each caller hands a *step*, a plain function that reads and writes a
:class:`~redfish_service.store.Transaction`. Steps that arrive while the store is busy
(committing someone else's transaction, waiting for the disk) wait together and then run
one after the other in a single transaction, followed by one ``finish(tx)`` for the whole
group: work that is the same whatever the group holds (recomputing the pools and the
fabric views from every block) is paid once per group, not once per caller, and so is
the disk flush. Each caller still gets its own step's result or exception.

* A step that raises without having written anything fails alone; the group goes on.
* A step that raises after writing, or a commit that fails, discards the group's
  transaction; each step is then run again in a transaction of its own, so a caller's
  outcome never depends on which other callers it happened to be grouped with.
* Steps of different actors are never grouped (a change records one actor).

Steps must not await (they run inside the shared transaction) and must be repeatable:
a step that did not commit may be run again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

from .store import Store, Transaction

T = TypeVar("T")
Step = Callable[[Transaction], Any]
_Waiting = tuple[Step, "asyncio.Future[Any]"]


class _Undone(Exception):
    """A step raised after it had written: the shared transaction cannot keep the rest."""


class GroupCommit:
    def __init__(self, store: Store, finish: Callable[[Transaction], None]) -> None:
        self._store = store
        self._finish = finish
        self._waiting: dict[str | None, list[_Waiting]] = {}
        self._drainer: asyncio.Task[None] | None = None

    async def run(self, actor: str | None, step: Callable[[Transaction], T], *,
                  alone: bool = False) -> T:
        """``step``'s result once its transaction committed, or its exception.
        ``alone``: in a transaction of its own (a step whose reads other steps' writes of
        the same group could mislead)."""
        if alone:
            return await self._alone(actor, step)
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(actor, []).append((step, future))
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.ensure_future(self._drain())
        return await future

    async def _drain(self) -> None:
        while self._waiting:
            actor = next(iter(self._waiting))
            group = self._waiting.pop(actor)
            try:
                await self._commit(actor, group)
            except BaseException as e:  # never leave a caller waiting for good
                for _, future in group:
                    _resolve(future, False, e if isinstance(e, Exception)
                             else RuntimeError("group commit stopped"))
                if not isinstance(e, Exception):
                    raise

    async def _commit(self, actor: str | None, group: list[_Waiting]) -> None:
        outcomes: list[tuple[bool, Any]] = []
        try:
            async with self._store.transaction(actor) as tx:
                # those that came while this waited for the store join the group
                group.extend(self._waiting.pop(actor, []))
                for step, _ in group:
                    wrote = tx.writes
                    try:
                        outcomes.append((True, step(tx)))
                    except Exception as e:
                        if tx.writes != wrote:
                            raise _Undone from e
                        outcomes.append((False, e))
                self._finish(tx)
        except Exception as e:
            if len(group) == 1:
                _resolve(group[0][1], False, e.__cause__ if isinstance(e, _Undone) else e)
                return
            for step, future in group:
                try:
                    _resolve(future, True, await self._alone(actor, step))
                except Exception as alone_error:
                    _resolve(future, False, alone_error)
            return
        for (ok, value), (_, future) in zip(outcomes, group, strict=True):
            _resolve(future, ok, value)

    async def _alone(self, actor: str | None, step: Callable[[Transaction], T]) -> T:
        async with self._store.transaction(actor) as tx:
            value = step(tx)
            self._finish(tx)
        return value


def _resolve(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if future.done():  # its caller went away
        return
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)
