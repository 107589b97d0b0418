"""Group commit (store/group.py): concurrent steps share one transaction and one finish,
yet each caller gets its own outcome, and no caller's outcome depends on its group."""

from __future__ import annotations

import asyncio

import pytest

from redfish_service.store import GroupCommit, MemoryBackend, SqliteBackend, Store, Transaction

COUNTER = "/r/counter"


def doc(uri: str, **props) -> dict:
    return {"@odata.id": uri, "@odata.type": "#Thing.v1_0_0.Thing",
            "Id": uri.rsplit("/", 1)[1], **props}


class CountingBackend(MemoryBackend):
    """Counts the commits that reach the backend (one per transaction with changes)."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[int] = []

    async def write(self, changes):
        self.writes.append(len(changes))
        await asyncio.sleep(0.01)  # a disk flush: others arrive meanwhile


@pytest.fixture
async def setup():
    backend = CountingBackend()
    store = Store(backend)
    await store.open()
    async with store.transaction() as tx:
        tx.create("/r", {"@odata.id": "/r", "@odata.type": "#C.C", "Members": [],
                         "Members@odata.count": 0}, member=False)
        tx.create(COUNTER, doc(COUNTER, N=0, Finished=0))
    finishes: list[int] = []

    def finish(tx: Transaction) -> None:
        """Once per group: records how many things the group staged."""
        c = tx.get(COUNTER)
        c["Finished"] += 1
        tx.put(COUNTER, c)
        finishes.append(c["N"])

    yield store, backend, GroupCommit(store, finish), finishes
    await store.close()


def add(uri: str, value: int):
    def step(tx: Transaction) -> str:
        tx.create(uri, doc(uri, Value=value))
        c = tx.get(COUNTER)
        c["N"] += 1
        tx.put(COUNTER, c)
        return uri
    return step


async def test_concurrent_steps_commit_together_each_with_its_result(setup):
    store, backend, group, finishes = setup
    before = len(backend.writes)
    # one holds the store while the others queue up behind it
    results = await asyncio.gather(*(group.run("alice", add(f"/r/t{i}", i)) for i in range(20)))
    assert results == [f"/r/t{i}" for i in range(20)]
    assert all(store.doc(f"/r/t{i}")["Value"] == i for i in range(20))
    assert store.doc(COUNTER)["N"] == 20
    commits = len(backend.writes) - before
    assert commits < 20, "steps waiting together were not grouped"
    assert store.doc(COUNTER)["Finished"] == commits == len(finishes)
    assert finishes[-1] == 20


async def test_a_step_that_refuses_before_writing_fails_alone(setup):
    store, _backend, group, _ = setup

    def refuse(tx: Transaction) -> None:
        tx.peek(COUNTER)
        raise ValueError("no such thing")

    outcomes = await asyncio.gather(
        group.run("alice", add("/r/a", 1)), group.run("alice", refuse),
        group.run("alice", add("/r/b", 2)), return_exceptions=True)
    assert outcomes[0] == "/r/a" and outcomes[2] == "/r/b"
    assert isinstance(outcomes[1], ValueError)
    assert store.doc(COUNTER)["N"] == 2


async def test_a_step_that_fails_after_writing_takes_nothing_of_its_group_with_it(setup):
    store, _backend, group, _ = setup

    def half_done(tx: Transaction) -> None:
        tx.create("/r/half", doc("/r/half"))
        raise RuntimeError("broke half-way")

    outcomes = await asyncio.gather(*(
        group.run("alice", step) for step in
        (add("/r/a", 1), half_done, add("/r/b", 2), add("/r/c", 3))), return_exceptions=True)
    assert outcomes[0] == "/r/a" and outcomes[2:] == ["/r/b", "/r/c"]
    assert isinstance(outcomes[1], RuntimeError)
    assert store.get("/r/half") is None, "a failed step's writes were committed"
    assert store.doc(COUNTER)["N"] == 3
    assert [store.doc(f"/r/{x}")["Value"] for x in "abc"] == [1, 2, 3]


async def test_a_failing_commit_fails_every_step_of_the_group(setup):
    store, backend, group, _ = setup

    async def broken(changes):
        raise OSError("disk full")

    backend.write = broken
    outcomes = await asyncio.gather(*(group.run("alice", add(f"/r/t{i}", i)) for i in range(3)),
                                    return_exceptions=True)
    assert all(isinstance(o, OSError) for o in outcomes)
    assert store.doc(COUNTER)["N"] == 0 and store.get("/r/t0") is None


async def test_actors_are_never_mixed_in_one_transaction(setup):
    store, _backend, group, _ = setup
    seen: list[tuple[str | None, str]] = []
    store.subscribe(lambda changes: seen.extend(
        (c.actor, c.uri) for c in changes if c.uri.startswith("/r/t")))
    await asyncio.gather(*(group.run(actor, add(f"/r/t{i}", i))
                           for i, actor in enumerate(["alice", "bob"] * 5)))
    assert sorted(seen, key=lambda s: s[1]) == [
        ((["alice", "bob"] * 5)[i], f"/r/t{i}") for i in range(10)]


async def test_alone_runs_in_its_own_transaction(setup):
    store, backend, group, finishes = setup
    before = len(backend.writes)
    assert await group.run("alice", add("/r/solo", 7), alone=True) == "/r/solo"
    assert len(backend.writes) == before + 1
    assert store.doc("/r/solo")["Value"] == 7 and finishes == [1]


async def test_grouped_steps_are_durable_on_sqlite(tmp_path):
    store = Store(SqliteBackend(tmp_path / "s.db"))
    await store.open()
    async with store.transaction() as tx:
        tx.create(COUNTER, doc(COUNTER, N=0, Finished=0))
    group = GroupCommit(store, lambda tx: None)
    await asyncio.gather(*(group.run(None, add(f"/r/t{i}", i)) for i in range(10)))
    await store.close()
    again = Store(SqliteBackend(tmp_path / "s.db"))
    await again.open()
    try:
        assert again.doc(COUNTER)["N"] == 10
        assert [again.doc(f"/r/t{i}")["Value"] for i in range(10)] == list(range(10))
    finally:
        await again.close()
