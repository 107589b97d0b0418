"""The event send budget (``Settings.event_sends_per_s``), set through the settings."""

from __future__ import annotations

import asyncio
import time

import pytest

from .test_events import ADMIN, hub, submit_test_event, subscribe

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def settings(settings):
    return settings.model_copy(update={"event_sends_per_s": 10.0})


async def test_the_send_budget_spaces_ticks_by_the_receivers_they_wake(rf, receivers):
    """With a budget of 10 sends a second, a tick that woke two receivers is followed by
    the next one 0.2 s later at the earliest: a steady trickle of records reaches each of
    them in a few POSTs, in order, instead of one POST per 25 ms tick."""
    assert hub(rf).sends_per_s == 10.0  # from Settings.event_sends_per_s
    first, second = await receivers(), await receivers()
    await subscribe(rf, ADMIN, first.url, Context="one")
    await subscribe(rf, ADMIN, second.url, Context="two")
    started = time.monotonic()
    for n in range(12):
        await submit_test_event(rf, f"s{n}")
        await asyncio.sleep(0.04)
    elapsed = time.monotonic() - started  # about 0.5 s: 12 ticks at 25 ms pacing
    for receiver in (first, second):
        await receiver.wait_for(lambda r: len(r.records) == 12, within=3)
        assert receiver.event_ids() == [f"s{n}" for n in range(12)]
        # one POST at once, then at most one per 0.2 s
        assert len(receiver.posts) <= 2 + elapsed / 0.2, len(receiver.posts)
