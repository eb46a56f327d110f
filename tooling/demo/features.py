"""The demo's storefront-feature step: a merchandising rule in action, and a brand-new catalog item
recommendable (through its catalog content) seconds after its catalog update, before any interaction."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from rich.console import Console

from core.events import ItemUpdate
from core.settings import Settings
from tooling.demo.pipeline import DemoError

if TYPE_CHECKING:
    import httpx

# The shared rule id: a second demo run replaces its own pin instead of stacking another.
PIN_RULE_ID = "demo-pin"
RULE_TIMEOUT_S = 10.0  # rules reach every replica within 2 s (serving.merchandising polls each second)
NEW_ITEM_TIMEOUT_S = 15.0  # catalog poll (1 s) + Kafka + consumer; the target is 2 s


def _wait(
    fetch: Callable[[], Any], done: Callable[[Any], bool], timeout_s: float
) -> tuple[Any, float | None]:
    start = time.monotonic()
    last = None
    while time.monotonic() - start < timeout_s:
        last = fetch()
        if done(last):
            return last, time.monotonic() - start
        time.sleep(0.2)
    return last, None


def pin_rule(
    http: httpx.Client,
    admin: Mapping[str, str],
    user: str,
    item: str,
    recs: Callable[[str], dict[str, Any]],
) -> tuple[dict[str, Any], float]:
    """Pin ``item`` at position 1 for everyone through the admin API; returns the user's list once it
    shows the pin, and how long that took."""
    http.delete(f"/v1/admin/rules/{PIN_RULE_ID}", headers=dict(admin))  # a previous run's pin, if any
    body = {
        "rule_id": PIN_RULE_ID,
        "kind": "pin",
        "item_id": item,
        "position": 1,
        "description": "streamrec demo: a merchandiser pins an item at the top",
    }
    resp = http.post("/v1/admin/rules", json=body, headers=dict(admin))
    if resp.status_code in (401, 403):
        raise DemoError("POST /v1/admin/rules needs an admin key: set STREAMREC_SERVING__API_KEYS_ADMIN")
    if resp.status_code >= 300:
        raise DemoError(f"POST /v1/admin/rules answered {resp.status_code}: {resp.text[:200]}")

    def pinned(b: dict[str, Any]) -> bool:
        items = b.get("items") or []
        return bool(items) and str(items[0]["item_id"]) == item

    after, took = _wait(lambda: recs(user), pinned, RULE_TIMEOUT_S)
    if took is None:
        raise DemoError(f"the pin rule did not show in {user}'s list within {RULE_TIMEOUT_S:.0f}s")
    return after, took


def remove_pin(http: httpx.Client, admin: Mapping[str, str]) -> None:
    http.delete(f"/v1/admin/rules/{PIN_RULE_ID}", headers=dict(admin))


def new_item_like(model_item: str, titles: Mapping[str, str], categories: Mapping[str, str]) -> ItemUpdate:
    """A brand-new catalog item that shares a recommended item's category and title words, so its
    content places it near that item."""
    title = titles.get(model_item, f"item {model_item}")
    data: dict[str, Any] = {"item_id": f"demo-new-{uuid.uuid4().hex[:8]}", "title": f"{title} (new edition)"}
    if model_item in categories:
        data["category"] = categories[model_item]
    return ItemUpdate(**data)


def publish_item(settings: Settings, update: ItemUpdate) -> None:
    from storage.kafka import flush_or_raise, make_producer
    from tooling.producers.produce import item_record

    producer = make_producer(settings.kafka)
    key, value = item_record(update)
    producer.produce(settings.kafka.topics.items, key=key, value=value)
    flush_or_raise(producer)


def wait_similar(http: httpx.Client, item: str) -> tuple[dict[str, Any], float]:
    """``/similar`` of a new item: 404 until serving has embedded it from its catalog content."""

    def fetch() -> Any:
        return http.get(f"/v1/items/{item}/similar", params={"k": 5})

    resp, took = _wait(
        fetch, lambda r: r.status_code == 200 and bool(r.json().get("items")), NEW_ITEM_TIMEOUT_S
    )
    if took is None:
        code = resp.status_code if resp is not None else "no answer"
        raise DemoError(
            f"the new item {item} had no similar items {NEW_ITEM_TIMEOUT_S:.0f}s after its catalog update "
            f"(last answer {code}); is content cold start on (STREAMREC_MODEL__CONTENT_COLD_START)?"
        )
    return dict(resp.json()), took


def show_features(
    console: Console,
    settings: Settings,
    http: httpx.Client,
    admin: Mapping[str, str],
    user: str,
    titles: dict[str, str],
    categories: Mapping[str, str],
    recs: Callable[[str], dict[str, Any]],
    print_recs: Callable[..., None],
    keep_rule: bool,
    avoid: set[str],
) -> None:
    """``avoid``: items the shopper interacted with (the demo's clicks among them), which their
    exclusion policy keeps off their list, pinned or not."""
    before = recs(user)
    shown = [str(e["item_id"]) for e in before.get("items", [])]
    popular = [str(p["item_id"]) for p in http.get("/v1/popular", params={"k": 50}).json().get("items", [])]
    candidates = [i for i in popular if i not in shown and i not in avoid]
    if not candidates or not shown:
        raise DemoError("no item to pin or to model a new item on; stream more events (--events)")
    pin = candidates[0]
    after, took = pin_rule(http, admin, user, pin, recs)
    console.print(
        f"a merchandiser pins {titles.get(pin, pin)!r} at #1 (POST /v1/admin/rules); "
        f"[green]{user}'s list shows it {took:.1f}s later[/], its reason names the rule:"
    )
    print_recs(user, after, titles, new={pin})
    if keep_rule:
        console.print(f"the pin stays while the demo runs: `streamrec rules remove {PIN_RULE_ID}` removes it")
    else:
        remove_pin(http, admin)

    update = new_item_like(shown[0], titles, categories)
    publish_item(settings, update)
    titles[update.item_id] = update.title or update.item_id
    similar, took = wait_similar(http, update.item_id)
    console.print(
        f"a new item {update.title!r} (category {update.category or '-'}) arrives through Kafka with no "
        f"interaction; [green]/similar answers {took:.1f}s after its catalog update[/] (catalog content):"
    )
    print_recs(f"similar to {update.item_id}", similar, titles)
    mine, in_list = _wait(
        lambda: recs(user),
        lambda b: update.item_id in {str(e["item_id"]) for e in b.get("items", [])},
        3.0,
    )
    if in_list is not None:
        console.print(f"[green]it is in {user}'s recommendations too[/] ({in_list:.1f}s):")
        print_recs(user, mine, titles, new={update.item_id})
    else:
        console.print(f"it is not in {user}'s top {len(shown)} (their taste ranks other items higher)")
