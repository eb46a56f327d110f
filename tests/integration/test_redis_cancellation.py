"""A cancelled task stops, whatever Redis call it was in: the serving loops (replica sync, snapshot
refresh) read Redis through ``RedisRealtimeReader``, and the app's shutdown waits for them to end.

On Python 3.11, redis-py's socket writes go through ``asyncio.wait_for``, which returns normally when
the cancel arrives as the write finishes (CPython gh-86296): the loop then went on polling and the
shutdown never finished (a CI run's TestClient waited 300 s). Before ``raise_lost_cancel``, this test
lost 214 of its 300 cancels."""

from __future__ import annotations

import asyncio
import random

from pydantic import SecretStr

from core.keys import ALL_TIME
from core.settings import RedisSettings
from storage.realtime_reader import RedisRealtimeReader

ROUNDS = 300


def test_every_cancel_ends_a_loop_of_redis_reads(redis_url: str) -> None:
    async def scenario() -> tuple[int, int]:
        reader = RedisRealtimeReader(RedisSettings(url=SecretStr(redis_url), key_prefix="tcancel:"))
        rng = random.Random(7)
        lost = ended_mid_call = 0
        try:
            for _ in range(ROUNDS):
                calls = {"n": 0}

                async def poll(calls: dict[str, int] = calls) -> None:
                    # The reads of serving's background loops: pipelines and single commands.
                    while True:
                        await reader.sync("0")
                        await reader.unavailable()
                        await reader.popularity(ALL_TIME, 10)
                        calls["n"] += 1

                task = asyncio.create_task(poll())
                await asyncio.sleep(rng.random() * 0.003)
                task.cancel()
                done, _ = await asyncio.wait([task], timeout=1.0)
                if not done:
                    lost += 1
                    task.cancel()  # so that the next round starts clean
                    await asyncio.wait([task], timeout=1.0)
                elif calls["n"] == 0:
                    ended_mid_call += 1
        finally:
            await reader.close()
        return lost, ended_mid_call

    lost, ended_mid_call = asyncio.run(scenario())
    assert lost == 0, f"{lost} of {ROUNDS} cancels were lost: the loop went on reading Redis"
    # The cancels did land inside Redis calls (what the test is about), not only between rounds.
    assert ended_mid_call > ROUNDS // 5
