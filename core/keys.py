"""Every Redis key streamrec uses, in one place (the contract between consumer and serving).

All keys start with the configured prefix (``STREAMREC_REDIS__KEY_PREFIX``, default ``sr:``).
Redis holds only derived state: ``streamrec rebuild-cache`` recomputes all of it from MongoDB.

The layout is Redis Cluster-ready: the braces below are literal *hash tags* (Redis hashes only the
text between the first ``{`` and the next ``}`` to pick a key's slot), ``<...>`` are placeholders.

- Every key of one user carries the tag ``{<uid>}``, so all of them are in one slot: serving's
  one-round-trip Lua read (``storage.realtime_reader``) and erasure touch one slot, and the cluster
  spreads users over its primaries.
- Every other key carries the shared tag ``{shared}``: the guard (generation marker, applied offsets)
  must be checked in the same server-side step as the effects it protects (popularity sums, the
  catalog mirror), and popularity merges read buckets and category sets together. They all live in
  one slot, so on a cluster one primary holds them; users, the bulk of the keys, are spread.
- On Redis Cluster the consumer's guarded step is split per slot (``storage.realtime_guard``): the
  shared-slot part runs guarded, and per-user parts (all idempotent) run first, unguarded.

Every key holding one user's data is derivable from the user id (``Keys.user_keys``), so erasure
deletes them directly instead of scanning the keyspace.

| key | type | written by | meaning |
|---|---|---|---|
| ``user:{<uid>}:recent`` | zset | consumer | last N interactions; member = JSON ``{"e","i","t"[,"v"]}`` (event id, item, type, value when present; ``core.recent``), score = event ms |
| ``user:{<uid>}:purchased`` | set | consumer | items the user bought |
| ``user:{<uid>}:seen`` | set | consumer | items the user interacted with in any way |
| ``user:{<uid>}:marker`` | int | consumer | bumped whenever the user's state changes; cached results carry the value they saw |
| ``user:{<uid>}:cache:recs`` | hash | serving | cached responses, field = request params, value = ``{marker}:{expires_ms}:{tag}:{items JSON}`` (``core.cache_payload``); key TTL |
| ``{shared}:pop:all`` | zset | consumer | all-time weighted popularity per item |
| ``{shared}:pop:<window>:<bucket_start_s>`` | zset | consumer | weighted popularity in one time bucket; decay is applied when buckets are merged at read time |
| ``{shared}:item:<iid>`` | hash | consumer | catalog mirror: title, category, price, available |
| ``{shared}:cat:<category>`` | set | consumer | item ids in a category (per-category popularity = ZINTERSTORE of a pop zset with this) |
| ``{shared}:unavailable`` | set | consumer | items marked unavailable |
| ``{shared}:applied:<topic>:<partition>`` | int | consumer | highest Kafka offset whose Redis effects are applied (exactly-once effects on redelivery) |
| ``{shared}:meta:generation`` | string | consumer, rebuild | set when derived state is complete; absent in an empty (restarted, flushed) Redis, which triggers a rebuild |
| ``{shared}:meta:rebuild-lock`` | string | consumer, rebuild | held (with a TTL) while one process rebuilds; effects are refused until ``meta:generation`` is back |
| ``{shared}:catalog:version`` | int | consumer | bumped with every availability change: replicas refetch ``unavailable`` at once |
| ``{shared}:erasures`` | stream | serving | user ids erased (capped): every replica stops using their embedding within a poll |
| ``{shared}:tmp:*`` | any | serving | short-lived merge results, always with a TTL |

Layout changes and upgrades: this layout replaced one without hash tags (``user:<uid>:recent``,
``pop:all``, ``meta:generation``, ``cache:recs:<uid>``...). The generation marker moved with it, so
an upgraded consumer finds no marker and rebuilds the new layout from MongoDB by itself (at start and
before its first batch), and that rebuild deletes every key under the prefix that the current layout
does not keep (``Keys.survives_rebuild``), old-layout keys included. Processes of the old and the new
layout must not run against one prefix at the same time (stop the old ones first, or give the new
ones another prefix): each would take the other's keys for stale ones.
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


# Hash tags (see the module docstring): the shared one, and the per-user one around the user id.
SHARED_TAG = "{shared}"


@dataclass(frozen=True)
class Keys:
    prefix: str = "sr:"

    def user(self, user_id: str, what: str) -> str:
        """One of ``user_id``'s keys: ``<prefix>user:{<uid>}:<what>``, all in the user's slot."""
        return f"{self.prefix}user:{{{user_id}}}:{what}"

    def shared(self, rest: str) -> str:
        """A key in the shared slot: ``<prefix>{shared}:<rest>``."""
        return f"{self.prefix}{SHARED_TAG}:{rest}"

    def recent(self, user_id: str) -> str:
        return self.user(user_id, "recent")

    def purchased(self, user_id: str) -> str:
        return self.user(user_id, "purchased")

    def seen(self, user_id: str) -> str:
        return self.user(user_id, "seen")

    def marker(self, user_id: str) -> str:
        return self.user(user_id, "marker")

    def user_state_keys(self, user_id: str) -> list[str]:
        """Every per-user state key the layout defines (a new per-user key must be added here)."""
        return [self.recent(user_id), self.purchased(user_id), self.seen(user_id), self.marker(user_id)]

    def user_keys(self, user_id: str) -> list[str]:
        """Every key that holds data of ``user_id``: what erasure deletes (all in one slot)."""
        return [*self.user_state_keys(user_id), self.recs_cache(user_id)]

    def recs_cache(self, user_id: str) -> str:
        """One hash per user (field = request params), so erasure is one UNLINK, not a SCAN."""
        return self.user(user_id, "cache:recs")

    def split_user(self, key: str) -> tuple[str, str] | None:
        """``(uid, what)`` for a per-user key of this layout, else None."""
        head = f"{self.prefix}user:{{"
        if not key.startswith(head):
            return None
        uid, sep, what = key[len(head) :].rpartition("}:")
        return (uid, what) if sep else None

    def shared_rest(self, key: str) -> str | None:
        """What follows ``<prefix>{shared}:`` in a shared key of this layout, else None."""
        head = self.shared("")
        return key[len(head) :] if key.startswith(head) else None

    def survives_rebuild(self, key: str) -> bool:
        """Keys a rebuild keeps: user markers (they must only grow), applied offsets (they guard
        redelivery), the generation marker and rebuild lock (the rebuild clears the rest while
        holding them). Anything else under the prefix, old-layout keys included, is derived."""
        user = self.split_user(key)
        if user is not None:
            return user[1] == "marker"
        rest = self.shared_rest(key)
        return rest is not None and rest.startswith(("applied:", "meta:"))

    def pop_all(self) -> str:
        return self.shared(f"pop:{ALL_TIME}")

    def pop_bucket(self, window: str, bucket_start: int) -> str:
        return self.shared(f"pop:{window}:{bucket_start}")

    def item(self, item_id: str) -> str:
        return self.shared(f"item:{item_id}")

    def category(self, category: str) -> str:
        return self.shared(f"cat:{category}")

    def unavailable(self) -> str:
        return self.shared("unavailable")

    def applied(self, topic: str, partition: int) -> str:
        return self.shared(f"applied:{topic}:{partition}")

    def generation(self) -> str:
        return self.shared("meta:generation")

    def rebuild_lock(self) -> str:
        return self.shared("meta:rebuild-lock")

    def catalog_version(self) -> str:
        return self.shared("catalog:version")

    def erasures(self) -> str:
        return self.shared("erasures")

    def tmp(self, name: str) -> str:
        return self.shared(f"tmp:{name}")

    def all_pattern(self) -> str:
        return f"{self.prefix}*"
