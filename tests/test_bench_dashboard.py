"""The dashboard bench (bench/dashboard.py) at a smoke size: one Redis reader, nothing lost."""

from __future__ import annotations

import pytest
from bench.dashboard import run_dashboard


@pytest.mark.timeout(90)
async def test_the_event_feed_serves_every_client_through_one_redis_reader(redis_url: str) -> None:
    result = await run_dashboard(redis_url, clients=8, events=5, timeout_s=30.0)
    assert result.error is None, result.error
    assert result.metrics["redis_readers"] == 1
    assert result.metrics["deliveries"] == 40
    assert result.metrics["lost"] == 0
    assert 0 < (result.get("fanout_p50_ms") or 0) <= (result.get("fanout_max_ms") or 0)
