"""What serving's catalog snapshot and merchandising cost at catalog scale (in process, no servers).

    python -m tooling.bench.catalog_cost --items 1000000 --json benchmarks/catalog_1m.json

Measures serving's own work (MongoDB's reads are not included): the first load (documents turned
into ``ItemMeta``, the dict built), the process's memory growth for it, a poll's work for 1,000
changed items and for 1,000 unchanged ones re-read in the overlap window, the share estimate of a
filter (once per filter per 10 s), and one request's merchandising: a filter plus a boost, a block,
a pin and a diversity cap over 600 candidates.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import resource
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from core.merch_filters import parse_filters
from core.merch_rules import Condition, Rule, RuleSet
from serving.catalog import CatalogSnapshot, ItemMeta
from serving.merchandising import Merchandiser, RulesHolder
from serving.ranking import Ranked
from storage.catalog_reader import InMemoryCatalogReader
from storage.merch_rules import InMemoryRuleStore


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _docs(n: int) -> dict[str, dict[str, Any]]:
    stamp = datetime(2026, 1, 1, tzinfo=UTC)
    return {
        f"item-{i}": {
            "_id": f"item-{i}",
            "title": f"Product number {i}",
            "category": f"cat-{i % 200}",
            "price": float(i % 500),
            "available": True,
            "properties": {"brand": f"brand-{i % 1000}", "colour": ("red", "blue", "green")[i % 3]},
            "added_at": stamp,
            "updated_at": stamp + timedelta(milliseconds=i // 100),
        }
        for i in range(n)
    }


async def measure(n: int) -> dict[str, Any]:
    docs = _docs(n)
    gc.collect()
    before = _rss_mb()
    reader = InMemoryCatalogReader(docs)
    snap = CatalogSnapshot(reader)
    # What the reader hands over (documents with item_id), read beforehand: the twin sorts the whole
    # dict per page, a cost of the twin, not of serving.
    pages = [{**d, "item_id": d["_id"]} for d in docs.values()]
    started = time.perf_counter()
    snap.apply([ItemMeta.from_doc(d) for d in pages])
    load_s = time.perf_counter() - started
    del pages
    gc.collect()
    after = _rss_mb()

    # A poll's own work in serving (the reader's query aside): turning the changed documents into
    # records and applying them; the overlap re-reads unchanged ones, which are only compared.
    changed = [
        {**docs[f"item-{i}"], "item_id": f"item-{i}", "price": 1.0} for i in range(0, n, max(1, n // 1000))
    ]
    for doc in changed:
        doc["updated_at"] = doc["updated_at"] + timedelta(seconds=60)
    started = time.perf_counter()
    change = snap.apply(ItemMeta.from_doc(d) for d in changed)
    changed_poll_ms = (time.perf_counter() - started) * 1000
    started = time.perf_counter()
    assert snap.apply(ItemMeta.from_doc(d) for d in changed) is None
    idle_poll_ms = (time.perf_counter() - started) * 1000

    rules = InMemoryRuleStore()
    for rule in (
        Rule(rule_id="up", kind="boost", condition=Condition(property="colour", value="red"), factor=2),
        Rule(rule_id="no", kind="block", condition=Condition(property="brand", value="brand-7")),
        Rule(rule_id="hero", kind="pin", item_id="item-5", position=3),
        Rule(rule_id="mix", kind="diversity", max_per_category=2),
    ):
        rules.add(rule)
    holder = RulesHolder(rules)
    holder.poll_once()
    merchandiser = Merchandiser(snap, holder)
    item_filter = parse_filters(price_max=250, filters=["colour:red", "colour:blue"], known=snap.has_property)
    started = time.perf_counter()
    merch = merchandiser.for_request(item_filter)
    share_ms = (time.perf_counter() - started) * 1000
    candidates = [Ranked(f"item-{i * 7}", 1.0 - i / 1000, "personalized") for i in range(600)]
    runs = 200
    started = time.perf_counter()
    for _ in range(runs):
        merch = merchandiser.for_request(item_filter)  # the share is held: as on a busy endpoint
        kept = [r for r in candidates if not merch.blocks(r.item_id)]
        out = merch.finish(kept, 20, merch.blocks)
    request_ms = (time.perf_counter() - started) * 1000 / runs
    assert isinstance(holder.current, RuleSet) and len(out) == 20
    return {
        "items": n,
        "first_load_s": round(load_s, 2),
        "rss_growth_mb": round(after - before, 1),
        "bytes_per_item": round((after - before) * 1024 * 1024 / n),
        "apply_1000_changes_ms": round(changed_poll_ms, 2),
        "overlap_reread_1000_unchanged_ms": round(idle_poll_ms, 2),
        "changes_seen": len(change.items) if change else 0,
        "filter_share_estimate_ms": round(share_ms, 2),
        "filter_share": round(merch.share, 3),
        "merch_per_request_ms": round(request_ms, 3),
        "note": "serving's own work in process: MongoDB's read of the items is not included; rss is "
        "the growth of the process's peak resident memory while the snapshot was built",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    result = asyncio.run(measure(args.items))
    text = orjson.dumps(result, option=orjson.OPT_INDENT_2)
    print(text.decode())
    if args.json is not None:
        args.json.write_bytes(text + b"\n")


if __name__ == "__main__":
    main()
