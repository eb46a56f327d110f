"""Every Redis key streamrec uses, in one place (the contract between consumer and serving).

All keys start with the configured prefix (``STREAMREC_REDIS__KEY_PREFIX``, default ``sr:``).
Redis holds only derived state: ``streamrec rebuild-cache`` recomputes all of it from MongoDB.

Every key holding one user's data is derivable from the user id (``Keys.user_keys``), so erasure
deletes them directly instead of scanning the keyspace.

| key | type | written by | meaning |
|---|---|---|---|
| ``user:{uid}:recent`` | zset | consumer | last N interactions; member = JSON ``{"e","i","t"[,"v"]}`` (event id, item, type, value when present; ``core.recent``), score = event ms |
| ``user:{uid}:purchased`` | set | consumer | items the user bought |
| ``user:{uid}:seen`` | set | consumer | items the user interacted with in any way |
| ``user:{uid}:marker`` | int | consumer | bumped whenever the user's state changes; cached results carry the value they saw |
| ``pop:all`` | zset | consumer | all-time weighted popularity per item |
| ``pop:{window}:{bucket_start_s}`` | zset | consumer | weighted popularity in one time bucket; decay is applied when buckets are merged at read time |
| ``item:{iid}`` | hash | consumer | catalog mirror: title, category, price, available |
| ``cat:{category}`` | set | consumer | item ids in a category (per-category popularity = ZINTERSTORE of a pop zset with this) |
| ``unavailable`` | set | consumer | items marked unavailable |
| ``applied:{topic}:{partition}`` | int | consumer | highest Kafka offset whose Redis effects are applied (exactly-once effects on redelivery) |
| ``meta:generation`` | string | consumer, rebuild | set when derived state is complete; absent in an empty (restarted, flushed) Redis, which triggers a rebuild |
| ``meta:rebuild-lock`` | string | consumer, rebuild | held (with a TTL) while one process rebuilds; effects are refused until ``meta:generation`` is back |
| ``cache:recs:{uid}`` | hash | serving | cached responses, field = request params, value = ``{marker}:{expires_ms}:{tag}:{items JSON}`` (``core.cache_payload``); key TTL |
| ``catalog:version`` | int | consumer | bumped with every availability change: replicas refetch ``unavailable`` at once |
| ``erasures`` | stream | serving | user ids erased (capped): every replica stops using their embedding within a poll |
| ``tmp:*`` | any | serving | short-lived merge results, always with a TTL |
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PopularityWindow:
    name: str
    length_s: int
    bucket_s: int
    # A bucket's weight halves every half_life_s of age, measured from the reader's clock.
    half_life_s: int

    def bucket_start(self, ts_s: float) -> int:
        return int(ts_s // self.bucket_s) * self.bucket_s

    def live_buckets(self, now_s: float) -> list[int]:
        """Bucket starts that overlap [now - length, now]."""
        first = self.bucket_start(now_s - self.length_s)
        last = self.bucket_start(now_s)
        return list(range(first, last + 1, self.bucket_s))

    def bucket_weight(self, bucket_start: int, now_s: float) -> float:
        age = max(0.0, now_s - (bucket_start + self.bucket_s / 2))
        return float(0.5 ** (age / self.half_life_s))


WINDOWS: dict[str, PopularityWindow] = {
    "1h": PopularityWindow("1h", length_s=3600, bucket_s=300, half_life_s=1800),
    "7d": PopularityWindow("7d", length_s=7 * 86400, bucket_s=3 * 3600, half_life_s=2 * 86400),
}
ALL_TIME = "all"
POPULARITY_WINDOWS: tuple[str, ...] = (*WINDOWS.keys(), ALL_TIME)


@dataclass(frozen=True)
class Keys:
    prefix: str = "sr:"

    def recent(self, user_id: str) -> str:
        return f"{self.prefix}user:{user_id}:recent"

    def purchased(self, user_id: str) -> str:
        return f"{self.prefix}user:{user_id}:purchased"

    def seen(self, user_id: str) -> str:
        return f"{self.prefix}user:{user_id}:seen"

    def marker(self, user_id: str) -> str:
        return f"{self.prefix}user:{user_id}:marker"

    def user_pattern(self, user_id: str) -> str:
        return f"{self.prefix}user:{user_id}:*"

    def user_state_keys(self, user_id: str) -> list[str]:
        """Every ``user:{uid}:*`` key the layout defines (a new per-user key must be added here)."""
        return [self.recent(user_id), self.purchased(user_id), self.seen(user_id), self.marker(user_id)]

    def user_keys(self, user_id: str) -> list[str]:
        """Every key that holds data of ``user_id``: what erasure deletes."""
        return [*self.user_state_keys(user_id), self.recs_cache(user_id)]

    def pop_all(self) -> str:
        return f"{self.prefix}pop:{ALL_TIME}"

    def pop_bucket(self, window: str, bucket_start: int) -> str:
        return f"{self.prefix}pop:{window}:{bucket_start}"

    def item(self, item_id: str) -> str:
        return f"{self.prefix}item:{item_id}"

    def category(self, category: str) -> str:
        return f"{self.prefix}cat:{category}"

    def unavailable(self) -> str:
        return f"{self.prefix}unavailable"

    def applied(self, topic: str, partition: int) -> str:
        return f"{self.prefix}applied:{topic}:{partition}"

    def generation(self) -> str:
        return f"{self.prefix}meta:generation"

    def rebuild_lock(self) -> str:
        return f"{self.prefix}meta:rebuild-lock"

    def recs_cache(self, user_id: str) -> str:
        """One hash per user (field = request params), so erasure is one UNLINK, not a SCAN."""
        return f"{self.prefix}cache:recs:{user_id}"

    def catalog_version(self) -> str:
        return f"{self.prefix}catalog:version"

    def erasures(self) -> str:
        return f"{self.prefix}erasures"

    def tmp(self, name: str) -> str:
        return f"{self.prefix}tmp:{name}"

    def all_pattern(self) -> str:
        return f"{self.prefix}*"
