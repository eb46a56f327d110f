"""`bench online`'s shoppers: simulated users ask the API for recommendations, and the click model
decides what they click, put in the cart and buy. Their events carry the answer's ``request_id`` as
``recommendation_id`` and the item's 0-based ``position``, as a storefront integrating streamrec sends
them.

Requests run on a few threads (a shop has many shoppers at once); the click model is seeded per
shopper and list, so the clicks do not depend on which thread answered first.

Also the bench's side of the API: its settings (an admin key of its own), the experiment it creates
through the admin API, and waiting for the server to apply it and for the consumer to store things.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import SecretStr

from core.errors import StreamrecError
from core.events import InteractionEvent
from core.ids import deterministic_event_id
from core.settings import Settings
from tooling.producers.simulator import ClickModel, Reaction

EXPERIMENT_ID = "bench-online"
CONTROL, DEGRADED = "control", "degraded"
# A shopper reacts this long after the list was shown, one reaction after the other.
REACTION_GAP_MS = 1000


@dataclass(frozen=True)
class Answer:
    """One recommendations answer, as much of it as the bench needs."""

    user_id: str
    request_id: str
    item_ids: list[str]
    experiment_id: str | None = None
    variant: str | None = None
    model_version: str | None = None
    # Wall-clock epoch milliseconds when the answer arrived (the events follow it).
    received_ms: int = 0

    @classmethod
    def from_json(cls, user_id: str, body: dict[str, Any], received_ms: int) -> Answer:
        """Raises ``StreamrecError`` when the body lacks what every recommendations answer has."""
        try:
            items = [str(item["item_id"]) for item in body["items"]]
            request_id = str(body["request_id"])
        except (KeyError, TypeError) as exc:
            raise StreamrecError(f"recommendations answer without {exc}: {str(body)[:300]}") from None
        version = body.get("model_version")
        return cls(
            user_id=user_id,
            request_id=request_id,
            item_ids=items,
            experiment_id=body.get("experiment_id"),
            variant=body.get("variant"),
            model_version=None if version is None else str(version),
            received_ms=received_ms,
        )


def reaction_events(answer: Answer, reactions: list[Reaction]) -> list[InteractionEvent]:
    """The shopper's events for one answer: ids derived from the answer, so a re-send is a duplicate."""
    events = []
    for n, reaction in enumerate(reactions):
        ts_ms = answer.received_ms + (n + 1) * REACTION_GAP_MS
        events.append(
            InteractionEvent(
                event_id=deterministic_event_id(
                    "bench-online", answer.request_id, reaction.position, reaction.event_type.value
                ),
                event_type=reaction.event_type,
                user_id=answer.user_id,
                item_id=reaction.item_id,
                timestamp=datetime.fromtimestamp(ts_ms / 1000, tz=UTC),
                session_id=f"online-{answer.request_id}"[:128],
                recommendation_id=answer.request_id,
                position=reaction.position,
            )
        )
    return events


@dataclass
class Shopping:
    answers: list[Answer] = field(default_factory=list)
    events: list[InteractionEvent] = field(default_factory=list)
    # One line per request that got no usable answer (status or transport error).
    errors: list[str] = field(default_factory=list)
    duration_s: float = 0.0


def get_recommendations(client: Any, user_id: str, k: int) -> Answer:
    """GET one shopper's recommendations; raises ``StreamrecError`` on anything but a 200 answer."""
    import httpx

    try:
        resp = client.get(f"/v1/users/{user_id}/recommendations", params={"k": k})
    except httpx.HTTPError as exc:
        raise StreamrecError(f"{user_id}: {type(exc).__name__}: {exc}") from None
    if resp.status_code != 200:
        raise StreamrecError(f"{user_id}: HTTP {resp.status_code} {resp.text[:200]}")
    return Answer.from_json(user_id, resp.json(), int(time.time() * 1000))


def run_shoppers(
    base_url: str,
    user_ids: list[str],
    model: ClickModel,
    *,
    k: int,
    concurrency: int,
    timeout_s: float = 10.0,
) -> Shopping:
    """Each shopper asks once (draw 0) and reacts; answers and events come back in shopper order."""
    import httpx

    local = threading.local()
    clients: list[Any] = []
    lock = threading.Lock()

    def client() -> Any:
        if not hasattr(local, "client"):
            local.client = httpx.Client(base_url=base_url, timeout=timeout_s)
            with lock:
                clients.append(local.client)
        return local.client

    def one(user_id: str) -> tuple[Answer | None, list[InteractionEvent], str | None]:
        try:
            answer = get_recommendations(client(), user_id, k)
        except StreamrecError as exc:
            return None, [], str(exc)
        return answer, reaction_events(answer, model.react(user_id, answer.item_ids, draw=0)), None

    out = Shopping()
    started = time.monotonic()
    try:
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            for answer, events, error in pool.map(one, user_ids):
                if answer is not None:
                    out.answers.append(answer)
                out.events += events
                if error is not None:
                    out.errors.append(error)
    finally:
        for c in clients:
            c.close()
    out.duration_s = time.monotonic() - started
    return out


def wait_for_experiment(base_url: str, experiment_id: str, k: int, timeout_s: float) -> int:
    """Ask for fresh (never cached) probe shoppers until answers carry the experiment; returns the
    number of answers it took (each one is an impression the server logs)."""
    import httpx

    deadline = time.monotonic() + timeout_s
    answered = 0
    with httpx.Client(base_url=base_url, timeout=10.0) as c:
        while True:
            answer = get_recommendations(c, f"probe-{experiment_id}-{answered}", k)
            answered += 1
            if answer.experiment_id == experiment_id:
                return answered
            if time.monotonic() > deadline:
                raise StreamrecError(
                    f"answers from {base_url} still carry no experiment {experiment_id!r} after "
                    f"{timeout_s:.0f}s (last: experiment_id={answer.experiment_id!r}); does this "
                    "serving version run experiments (issue 14)?"
                )
            time.sleep(0.25)


# ---------------------------------------------------------------- the experiment and waiting


def wait_count(count: Callable[[], int], want: int, settle_s: float, poll_s: float = 0.5) -> int:
    """Poll ``count`` until it reaches ``want`` or has not moved for ``settle_s``; returns the last count."""
    last, last_change = -1, time.monotonic()
    while True:
        n = count()
        now = time.monotonic()
        if n >= want:
            return n
        if n != last:
            last, last_change = n, now
        elif now - last_change > settle_s:
            return n
        time.sleep(poll_s)


def create_experiment(base_url: str, admin_key: str, good: int, degraded: int) -> dict[str, Any]:
    import httpx

    body = {
        "experiment_id": EXPERIMENT_ID,
        "variants": [
            {"name": CONTROL, "share": 0.5, "model_version": str(good)},
            {"name": DEGRADED, "share": 0.5, "model_version": str(degraded)},
        ],
        "control": CONTROL,
        "surfaces": ["recommendations"],
    }
    resp = httpx.post(
        base_url + "/v1/admin/experiments", json=body, headers={"X-API-Key": admin_key}, timeout=10.0
    )
    if resp.status_code not in (200, 201):
        raise StreamrecError(
            f"POST /v1/admin/experiments answered {resp.status_code}: {resp.text[:300]}; this bench needs "
            "serving's experiments API (issue 14)"
        )
    return body


def experiment_report(base_url: str, admin_key: str, experiment_id: str) -> dict[str, Any]:
    """The product's report of the experiment, as the admin API serves it."""
    import httpx

    resp = httpx.get(
        f"{base_url}/v1/admin/experiments/{experiment_id}", headers={"X-API-Key": admin_key}, timeout=60.0
    )
    if resp.status_code != 200:
        raise RuntimeError(
            f"GET /v1/admin/experiments/{experiment_id} answered {resp.status_code}: {resp.text[:300]}"
        )
    report: dict[str, Any] = resp.json()["report"]
    return report


def api_settings(settings: Settings, port: int, admin_key: str) -> Settings:
    from tooling.bench.serve import serving_settings

    api = serving_settings(settings, port)
    serving = api.serving.model_copy(update={"api_keys_admin": [SecretStr(admin_key)]})
    return api.model_copy(update={"serving": serving})
