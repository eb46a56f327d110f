"""Impressions through real Kafka into MongoDB, events attributed to them, and a consumer SIGKILLed
mid-stream: every impression is stored exactly once (delivered at least once, stored once)."""

from __future__ import annotations

import functools
import signal
import subprocess
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from prometheus_client import REGISTRY

from core.impressions import Impression, ShownItem
from core.settings import Settings
from storage.impressions_mongo import TTL_INDEX
from storage.kafka import flush_or_raise, make_producer
from tests.integration.test_consumer_e2e import read_topic, running_consumer, wait_until
from tests.integration.test_consumer_resilience import REPO, consumer_env, streamrec_bin


def impression(
    iid: str,
    user: str | None,
    items: list[str],
    ts: datetime,
    *,
    shadow: bool = False,
    variant: str | None = "treatment",
) -> Impression:
    return Impression(
        impression_id=iid,
        request_id=iid.removesuffix(":shadow"),
        user_id=user,
        surface="recommendations",
        model_version="5",
        experiment_id="exp-e2e" if variant else None,
        variant=variant,
        items=[ShownItem(item_id=i, position=n, reason="personal") for n, i in enumerate(items)],
        ts=ts,
        shadow=shadow,
    )


def event(eid: str, etype: str, user: str, item: str, ts: datetime, **extra: Any) -> bytes:
    body = {
        "event_id": eid,
        "event_type": etype,
        "user_id": user,
        "item_id": item,
        "timestamp": ts.isoformat(),
        **extra,
    }
    return orjson.dumps(body)


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_impressions_are_stored_and_events_attributed_by_id_and_by_window(
    settings: Settings, kafka_topics, mongo_db
) -> None:
    topics = settings.kafka.topics
    for name in (topics.events, topics.items, topics.impressions):
        kafka_topics.create(name, partitions=1)
    now = datetime.now(UTC)
    shown = [
        impression("r1", "u1", ["i1", "i2", "i3"], now - timedelta(minutes=2)),
        impression("r1:shadow", "u1", ["i9", "i2"], now - timedelta(minutes=2), shadow=True),
        impression("r2", "u2", ["i5"], now - timedelta(hours=2)),  # too old for the window
        impression("r3", None, ["i7"], now - timedelta(minutes=1), variant=None),  # anonymous
    ]
    labels = {"model_version": "5", "variant": "treatment"}
    before = {
        "impressions": sample("streamrec_consumer_impressions_total", surface="recommendations", **labels),
        "by_id": sample("streamrec_consumer_attributed_events_total", event_type="click", by="id", **labels),
        "window": sample(
            "streamrec_consumer_attributed_events_total", event_type="add_to_cart", by="window", **labels
        ),
    }
    producer = make_producer(settings.kafka)
    with running_consumer(settings) as (_runner, thread, result):
        for imp in shown:
            producer.produce(topics.impressions, key=imp.key, value=imp.to_json())
        producer.produce(topics.impressions, key=shown[0].key, value=shown[0].to_json())  # a retry
        producer.produce(topics.impressions, key=b"u1", value=b'{"impression_id": "bad"}')
        flush_or_raise(producer)
        wait_until(lambda: mongo_db["impressions"].count_documents({}) >= 4, 60, "impressions stored")
        clicks = {
            # by id; the position is the item's in r1
            "by-id": event("by-id", "click", "u1", "i2", now, recommendation_id="r1"),
            # no id: the newest live impression of u1 that showed i3 (r1; its shadow twin never counts)
            "by-window": event("by-window", "add_to_cart", "u1", "i3", now),
            # r1 did not show i9 (only its shadow did): the id does not count, nor does the window
            "not-shown": event("not-shown", "click", "u1", "i9", now, recommendation_id="r1"),
            "too-late": event("too-late", "purchase", "u2", "i5", now),
            "a-view": event("a-view", "view", "u1", "i1", now, recommendation_id="r1", position=0),
            # an anonymous list (before login) counts when named
            "anon-list": event("anon-list", "purchase", "u3", "i7", now, recommendation_id="r3", position=4),
        }
        for eid, value in clicks.items():
            producer.produce(topics.events, key=eid.encode(), value=value)
        flush_or_raise(producer)
        wait_until(lambda: mongo_db["events"].count_documents({}) >= len(clicks), 60, "events stored")
        assert thread.is_alive(), result
    assert result == {"code": 0}

    stored = {d["_id"]: d for d in mongo_db["impressions"].find()}
    assert set(stored) == {"r1", "r1:shadow", "r2", "r3"}
    assert stored["r1"]["items"][1] == {"item_id": "i2", "position": 1, "reason": "personal"}
    assert stored["r1:shadow"]["shadow"] is True
    indexes = mongo_db["impressions"].index_information()
    assert indexes[TTL_INDEX]["expireAfterSeconds"] == int(
        settings.serving.impressions.retention_days * 86400
    )

    events = {d["_id"]: d for d in mongo_db["events"].find()}
    by_id = events["by-id"]["attribution"]
    assert {k: by_id[k] for k in ("impression_id", "by", "position", "variant", "experiment_id")} == {
        "impression_id": "r1",
        "by": "id",
        "position": 1,
        "variant": "treatment",
        "experiment_id": "exp-e2e",
    }
    assert by_id["model_version"] == "5" and by_id["surface"] == "recommendations"
    assert abs(by_id["impression_ts"].replace(tzinfo=UTC) - shown[0].ts) < timedelta(milliseconds=1)
    window = events["by-window"]["attribution"]
    assert (window["impression_id"], window["by"], window["position"]) == ("r1", "window", 2)
    anon = events["anon-list"]["attribution"]
    assert (anon["impression_id"], anon["by"], anon["position"], anon["variant"]) == ("r3", "id", 4, None)
    for unattributed in ("not-shown", "too-late", "a-view"):
        assert "attribution" not in events[unattributed], unattributed
    assert events["by-id"]["recommendation_id"] == "r1" and events["a-view"]["position"] == 0

    dead = read_topic(settings, topics.dead_letter, expected=1)
    assert len(dead) == 1
    headers = dict(dead[0].headers())
    assert headers["source_topic"] == topics.impressions.encode()
    assert headers["error_code"] == b"invalid_value" and headers["reason"]

    # r1 and r2 (the shadow list was never shown; r3 is outside any experiment)
    stored_now = sample("streamrec_consumer_impressions_total", surface="recommendations", **labels)
    assert stored_now - before["impressions"] == 2
    assert (
        sample("streamrec_consumer_attributed_events_total", event_type="click", by="id", **labels)
        - before["by_id"]
        == 1
    )
    assert (
        sample("streamrec_consumer_attributed_events_total", event_type="add_to_cart", by="window", **labels)
        - before["window"]
        == 1
    )


def test_sigkill_mid_stream_stores_every_impression_exactly_once(
    settings: Settings, kafka_topics, mongo_db
) -> None:
    topics = settings.kafka.topics
    kafka_topics.create(topics.events, partitions=2)
    kafka_topics.create(topics.items, partitions=1)
    kafka_topics.create(topics.impressions, partitions=2)
    n_users, total = 30, 900
    now = datetime.now(UTC) - timedelta(minutes=10)
    shown = [
        # Items of their own, so a click can only ever be credited to its own impression.
        impression(f"r{n}", f"u{n % n_users}", [f"i{n}-a", f"i{n}-b"], now + timedelta(seconds=n / 10))
        for n in range(total)
    ]

    def produce_slowly() -> None:
        producer = make_producer(settings.kafka)

        def impressions(chunk: list[Impression]) -> None:
            for imp in chunk:
                producer.produce(topics.impressions, key=imp.key, value=imp.to_json())
            for imp in chunk[::7]:  # serving's producer retried some: delivered twice
                producer.produce(topics.impressions, key=imp.key, value=imp.to_json())
            producer.flush(10)

        def clicks(chunk: list[Impression]) -> None:
            # The shopper clicks what the list showed, a moment later (naming it when its number is odd).
            for imp in chunk[::3]:
                user, item = imp.user_id or "", imp.items[1].item_id
                extra = {"recommendation_id": imp.impression_id} if int(imp.impression_id[1:]) % 2 else {}
                ts = imp.ts + timedelta(seconds=1)
                value = event(f"c-{imp.impression_id}", "click", user, item, ts, **extra)
                producer.produce(topics.events, key=user.encode(), value=value)
            producer.flush(10)

        for n, start in enumerate(range(0, total, 60)):
            chunk = shown[start : start + 60]
            # Every other chunk's clicks reach Kafka before their impressions (serving lingers before
            # producing; a fast shopper clicks sooner) and, read by a live consumer, are stored first.
            # Slow enough that the feed outlasts the consumer's start and the kills.
            steps = (clicks, impressions) if n % 2 else (impressions, clicks)
            for step in steps:
                step(chunk)
                time.sleep(0.5)
        flush_or_raise(producer)

    feeder = threading.Thread(target=produce_slowly, daemon=True)
    feeder.start()
    env = consumer_env(settings)

    def count() -> int:
        return int(mongo_db["impressions"].count_documents({}))

    for kill_at in (total // 4, total // 2):
        proc = subprocess.Popen([streamrec_bin(), "consume"], env=env, cwd=REPO, stdout=subprocess.DEVNULL)
        try:
            wait_until(
                functools.partial(lambda k: count() >= k, kill_at), 120, f"{kill_at} impressions stored"
            )
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
    feeder.join(120)
    clicks = len(shown[::3])
    proc = subprocess.Popen([streamrec_bin(), "consume"], env=env, cwd=REPO, stdout=subprocess.DEVNULL)
    try:
        wait_until(lambda: count() >= total, 120, "every impression stored")
        wait_until(lambda: mongo_db["events"].count_documents({}) >= clicks, 120, "every click stored")
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
    assert code == 0

    # _id = impression_id: a redelivered or retried impression can only be found, never stored twice.
    assert count() == total
    assert sorted(d["_id"] for d in mongo_db["impressions"].find({}, {"_id": 1})) == sorted(
        i.impression_id for i in shown
    )
    assert mongo_db["events"].count_documents({}) == clicks
    # A click can outrun its impression (two topics, no order between them: after a restart the
    # backlog of one topic may come first); the impression credits it when it is stored, even when
    # a kill came between its insert and that pass. So every click ends up credited, to its own
    # impression (its items are its own), by id when it named it.
    assert_every_click_credited_to_its_own_impression(mongo_db, clicks)


def assert_every_click_credited_to_its_own_impression(mongo_db: Any, clicks: int) -> None:
    def credited() -> int:
        return int(mongo_db["events"].count_documents({"attribution": {"$exists": True}}))

    try:
        wait_until(lambda: credited() >= clicks, 30, "every click credited")
    finally:
        missing = [d["_id"] for d in mongo_db["events"].find({"attribution": {"$exists": False}})]
        assert missing == [], f"{len(missing)}/{clicks} clicks not credited: {sorted(missing)[:10]}"
    for doc in mongo_db["events"].find({}):
        assert doc["attribution"]["impression_id"] == doc["_id"].removeprefix("c-"), doc
        assert doc["attribution"]["by"] == ("id" if doc.get("recommendation_id") else "window"), doc
        assert doc["attribution"]["position"] == 1


def shown_and_clicked(first: int, count: int, now: datetime) -> list[tuple[Impression, bytes]]:
    """Impression r{n} of shopper u{n % 10} with items of its own, and the click on its second item a
    second later (naming it when n is odd)."""
    out = []
    for n in range(first, first + count):
        imp = impression(f"r{n}", f"u{n % 10}", [f"i{n}-a", f"i{n}-b"], now + timedelta(seconds=n))
        extra = {"recommendation_id": imp.impression_id} if n % 2 else {}
        value = event(
            f"c-r{n}", "click", imp.user_id or "", f"i{n}-b", imp.ts + timedelta(seconds=1), **extra
        )
        out.append((imp, value))
    return out


def clicks_credited(**labels: str) -> float:
    return sum(
        sample("streamrec_consumer_attributed_events_total", event_type="click", by=by, **labels)
        for by in ("id", "window")
    )


def test_every_click_is_credited_whichever_topic_the_consumer_reads_first(
    settings: Settings, kafka_topics, mongo_db
) -> None:
    topics = settings.kafka.topics
    for name in (topics.events, topics.items, topics.impressions):
        kafka_topics.create(name, partitions=1)
    # Small batches, so the backlog of the two topics is read in many interleaved batches.
    settings = settings.model_copy(
        update={"consumer": settings.consumer.model_copy(update={"batch_size": 10})}
    )
    now = datetime.now(UTC) - timedelta(minutes=10)
    labels = {"model_version": "5", "variant": "treatment"}
    before = clicks_credited(**labels)
    late_before = {
        (by, change): sample(
            "streamrec_consumer_late_attributions_total", event_type="click", by=by, change=change, **labels
        )
        for by in ("id", "window")
        for change in ("new", "upgraded")
    }
    producer = make_producer(settings.kafka)
    # A backlog where every click was produced before its impression, then the consumer starts.
    backlog = shown_and_clicked(0, 60, now)
    for imp, click in backlog:
        producer.produce(topics.events, key=imp.key, value=click)
    flush_or_raise(producer)
    for imp, _ in backlog:
        producer.produce(topics.impressions, key=imp.key, value=imp.to_json())
    flush_or_raise(producer)
    with running_consumer(settings) as (_runner, thread, result):
        wait_until(lambda: mongo_db["impressions"].count_documents({}) >= 60, 60, "the backlog's impressions")
        assert_every_click_credited_to_its_own_impression(mongo_db, 60)

        # Live: the clicks are stored first, then their impressions come.
        live = shown_and_clicked(60, 20, now)
        for imp, click in live:
            producer.produce(topics.events, key=imp.key, value=click)
        flush_or_raise(producer)
        wait_until(lambda: mongo_db["events"].count_documents({}) >= 80, 60, "the live clicks stored")
        assert mongo_db["events"].count_documents({"attribution": {"$exists": True}}) == 60
        for imp, _ in live:
            producer.produce(topics.impressions, key=imp.key, value=imp.to_json())
        flush_or_raise(producer)
        assert_every_click_credited_to_its_own_impression(mongo_db, 80)
        assert thread.is_alive(), result
    assert result == {"code": 0}

    def late(by: str, change: str) -> float:
        now_n = sample(
            "streamrec_consumer_late_attributions_total", event_type="click", by=by, change=change, **labels
        )
        return now_n - late_before[(by, change)]

    # Each click counts once in the CTR numerator, whether credited at its insert or later.
    assert clicks_credited(**labels) - before == 80
    # The live ones were all credited late: half named their impression.
    assert late("id", "new") >= 10 and late("window", "new") >= 10
    assert late("id", "upgraded") == late("window", "upgraded") == 0


def test_a_window_credit_is_upgraded_when_the_named_impression_arrives_late(
    settings: Settings, kafka_topics, mongo_db
) -> None:
    topics = settings.kafka.topics
    for name in (topics.events, topics.items, topics.impressions):
        kafka_topics.create(name, partitions=1)
    now = datetime.now(UTC) - timedelta(minutes=5)
    older = impression("older", "u1", ["i1", "i2"], now)
    named = impression("named", "u1", ["i2"], now + timedelta(seconds=30), variant="control")
    producer = make_producer(settings.kafka)
    labels = {"event_type": "click", "model_version": "5", "variant": "control"}
    upgraded_before = sample(
        "streamrec_consumer_late_attributions_total", by="id", change="upgraded", **labels
    )
    with running_consumer(settings) as (_runner, thread, result):
        producer.produce(topics.impressions, key=older.key, value=older.to_json())
        flush_or_raise(producer)
        wait_until(lambda: mongo_db["impressions"].count_documents({}) >= 1, 60, "the older impression")
        click = event("c1", "click", "u1", "i2", now + timedelta(minutes=1), recommendation_id="named")
        producer.produce(topics.events, key=b"u1", value=click)
        flush_or_raise(producer)
        wait_until(lambda: mongo_db["events"].count_documents({}) >= 1, 60, "the click")
        first = mongo_db["events"].find_one({"_id": "c1"})["attribution"]
        assert (first["impression_id"], first["by"]) == ("older", "window")
        producer.produce(topics.impressions, key=named.key, value=named.to_json())
        flush_or_raise(producer)
        wait_until(
            lambda: mongo_db["events"].find_one({"_id": "c1"})["attribution"]["by"] == "id", 60, "upgrade"
        )
        assert thread.is_alive(), result
    got = mongo_db["events"].find_one({"_id": "c1"})["attribution"]
    assert (got["impression_id"], got["by"], got["position"], got["variant"]) == ("named", "id", 0, "control")
    upgraded = sample("streamrec_consumer_late_attributions_total", by="id", change="upgraded", **labels)
    assert upgraded - upgraded_before == 1
