"""The Python client's item filters, discovery lists and shopper attributes against the real API app:
filters narrow every list, a bad filter carries the server's reason, typed trending and new arrivals."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from streamrec_client import BadRequest, Forbidden, InvalidRequest, NotFound, StreamrecClient, Unavailable
from streamrec_client import models as m
from tests.unit.test_client import Flaky, mocked
from tests.unit.test_serving_discovery import added, trend_data
from tests.unit.test_serving_helpers import INGEST, READ, harness
from tests.unit.test_serving_merch import ALL_IDS, brand_of, price_of, rig


def test_filters_narrow_every_list_endpoint() -> None:
    with rig() as (h, _reader, _rules), StreamrecClient(http=h.client) as api:
        h.client.headers["X-API-Key"] = READ
        lists: dict[str, Any] = {
            "recommendations": lambda **f: api.recommendations("alice", 4, **f),
            "similar": lambda **f: api.similar("books-0", 4, **f),
            "popular": lambda **f: api.popular(4, window="all", **f),
            "trending": lambda **f: api.trending(4, **f),
            "new": lambda **f: api.new_arrivals(4, **f),
            "rerank": lambda **f: api.rerank("alice", ALL_IDS, **f),
        }
        for name, fetch in lists.items():
            assert {brand_of(i.item_id) for i in fetch().items} == {"acme", "zeta"}, name
            acme = [i.item_id for i in fetch(brand="ACME").items]
            assert acme and {brand_of(i) for i in acme} == {"acme"}, name
            band = [i.item_id for i in fetch(price_min=50, price_max=70).items]
            assert band and all(50 <= price_of(i) <= 70 for i in band), name
            # Two properties: both must hold (colour blue is the ids ending 5..9).
            both = [i.item_id for i in fetch(filter=["colour:blue", "brand:zeta"]).items]
            assert both and all(int(i[-1]) >= 5 and brand_of(i) == "zeta" for i in both), name


def test_a_filter_is_sent_as_a_repeated_parameter() -> None:
    seen: list[httpx.URL] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.url)
        return httpx.Response(503, json={"error": {"code": "x", "message": "m", "request_id": "r"}})

    http = httpx.Client(transport=httpx.MockTransport(answer), base_url="http://x")
    with StreamrecClient(http=http, retries=1) as api, pytest.raises(Unavailable):
        api.trending(3, filter=["colour:red", "size:4:5"], brand="acme", price_max=9.5)
    params = seen[0].params
    assert params.get_list("filter") == ["colour:red", "size:4:5"]
    assert (params["brand"], params["price_max"], "price_min" in params) == ("acme", "9.5", False)
    with StreamrecClient(http=http, retries=1) as api, pytest.raises(Unavailable):
        api.popular(filter="colour:red")  # one string is one filter, not its characters
    assert seen[1].params.get_list("filter") == ["colour:red"]


def test_a_bad_filter_is_bad_request_with_the_servers_reason() -> None:
    with rig() as (h, _reader, _rules), StreamrecClient(http=h.client) as api:
        h.client.headers["X-API-Key"] = READ
        for filters, fragment in (
            ({"filter": "colour:"}, "malformed"),
            ({"filter": ["colour:red", "size:42"]}, "unknown property 'size'"),
            ({"price_min": 50, "price_max": 10}, "greater than price_max"),
        ):
            with pytest.raises(BadRequest) as refused:
                api.recommendations("alice", 3, **filters)
            assert refused.value.code == "invalid_filter" and fragment in refused.value.message
            assert refused.value.request_id
        with pytest.raises(InvalidRequest):  # the query's own limits: the server's 422
            api.popular(price_min=-1)
    # Without ':' it can never be valid: refused before sending (no request id), same type and code.
    flaky = Flaky()
    with pytest.raises(BadRequest, match="'colour' is malformed") as early:
        mocked(flaky).similar("books-0", filter=["brand:acme", "colour"])
    assert early.value.code == "invalid_filter" and early.value.request_id is None
    assert flaky.requests == []


def test_trending_and_new_arrivals_answer_typed() -> None:
    with harness() as h, StreamrecClient(http=h.client) as api:
        h.client.headers["X-API-Key"] = READ
        trend_data(h)
        added(h)
        trending = api.trending(10)
        assert isinstance(trending, m.Trending)
        assert (trending.short_window, trending.long_window, trending.degraded) == ("1h", "7d", False)
        assert [i.item_id for i in trending.items] == ["games-1", "music-2", "books-0"]
        top = trending.items[0].reason
        assert top.kind == "trending" and top.growth == round(trending.items[0].score or 0, 3)
        assert (top.short_per_hour or 0) > (top.long_per_hour or 0) > 0
        assert [i.item_id for i in api.trending(category="music").items] == ["music-2"]
        fresh = api.new_arrivals(4)
        assert isinstance(fresh, m.NewArrivals) and not fresh.personalized and fresh.user_id is None
        assert [i.item_id for i in fresh.items] == ["books-0", "fresh-x", "books-1", "tools-0"]
        assert fresh.items[0].reason.basis == "recency" and fresh.items[0].reason.added_at
        for_bob = api.new_arrivals(4, user_id="bob", category="tools")
        assert for_bob.personalized and for_bob.user_id == "bob" and for_bob.category == "tools"
        assert [i.item_id for i in for_bob.items] == ["tools-0", "tools-1"]


def test_shopper_attributes_round_trip() -> None:
    with harness() as h, StreamrecClient(http=h.client) as api:
        h.client.headers["X-API-Key"] = INGEST
        attributes = {"country": "SE", "segment": "vip", "age_band": 3, "newsletter": True}
        stored = api.set_shopper_attributes("with space?", attributes)
        assert isinstance(stored, m.Shopper) and stored.user_id == "with space?"
        assert stored.attributes == attributes and stored.updated_at
        assert api.shopper_attributes("with space?") == stored
        assert api.set_shopper_attributes("with space?", {"segment": "new"}).attributes == {"segment": "new"}
        with pytest.raises(NotFound) as unknown:
            api.shopper_attributes("nobody")
        assert unknown.value.code == "unknown_user"
        with pytest.raises(InvalidRequest):  # attributes are flat scalars
            api.set_shopper_attributes("u1", {"nested": {"a": 1}})
        h.client.headers["X-API-Key"] = READ  # personal data: the read key is not enough
        with pytest.raises(Forbidden):
            api.shopper_attributes("with space?")
