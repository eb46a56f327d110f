"""The online-report, shadow and experiment admin endpoints over the in-memory twins."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from core.experiments import assign
from tests.unit.online_fixtures import event, impression, recent
from tests.unit.test_serving_api import assert_error
from tests.unit.test_serving_helpers import ADMIN, READ, Harness, harness, model_files

AUTH = {"X-API-Key": ADMIN}
AB = {
    "experiment_id": "exp",
    "variants": [
        {"name": "control", "share": 0.5},
        {"name": "treatment", "share": 0.5, "model_version": "2"},
    ],
}


def post(h: Harness, path: str, body: Any = None, key: str | None = ADMIN) -> Any:
    return h.client.post(path, json=body, headers={"X-API-Key": key} if key else {})


def get(h: Harness, path: str, key: str | None = ADMIN, **params: Any) -> Any:
    return h.client.get(path, params=params, headers={"X-API-Key": key} if key else {})


def traffic(h: Harness, users: int, ctr: dict[str, float], experiment: str = "exp") -> None:
    """Impressions of the running experiment an hour ago, clicks at the given rates."""
    exp = h.experiments.get(experiment)
    h.experiments.update(experiment, created_at=datetime.now(UTC) - timedelta(hours=2))
    seen = dict.fromkeys(ctr, 0)
    docs, clicks = [], []
    for i in range(users):
        name = assign(exp, f"user-{i}").name
        doc = impression(f"req-{i}", f"user-{i}", experiment=experiment, variant=name, minutes=recent(60))
        docs.append(doc)
        seen[name] += 1
        per_mille = round(ctr[name] * 1000)
        if seen[name] * per_mille // 1000 > (seen[name] - 1) * per_mille // 1000:
            clicks.append(event(f"ev-{i}", doc, minutes=recent(59)))
    h.impression_store.insert_impressions(docs)
    h.events.insert_events(clicks)


def test_online_report_groups_and_refuses_bad_parameters() -> None:
    with harness() as h:
        shown = [impression(f"r{i}", f"u{i}", version="1", minutes=recent(30)) for i in range(4)]
        h.impression_store.insert_impressions([*shown, impression("old", minutes=recent(60 * 24 * 3))])
        h.events.insert_events([event("e1", shown[0], minutes=recent(29))])
        resp = get(h, "/v1/admin/online", since="24h", by="model_version")
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["by"] == "model_version" and body["impressions"] == 4
        (row,) = body["rows"]
        assert (row["group"], row["impressions"], row["clicks"], row["ctr"]) == ("1", 4, 1, 0.25)
        assert len(row["ctr_ci95"]) == 2
        by_position = get(h, "/v1/admin/online", since="7d", by="position").json()
        assert [r["group"] for r in by_position["rows"]] == [0, 1, 2]
        assert get(h, "/v1/admin/online").json()["impressions"] == 4  # 24h by default
        # A window longer than the impressions are kept reads what is kept.
        assert get(h, "/v1/admin/online", since="999999999999d").status_code == 200
        assert_error(get(h, "/v1/admin/online", since="yesterday"), 422, "invalid_request")
        assert_error(get(h, "/v1/admin/online", by="colour"), 422, "invalid_request")
        assert_error(get(h, "/v1/admin/online", key=READ), 403, "forbidden")
        assert_error(get(h, "/v1/admin/online", key=None), 401, "unauthorized")
        h.events.fail_with = ConnectionError("mongo is down")
        assert_error(get(h, "/v1/admin/online"), 503, "mongodb_unavailable")


def test_create_list_show_and_stop_an_experiment() -> None:
    with harness() as h:
        h.registry.publish(model_files(seed=1), {})  # v2
        resp = post(h, "/v1/admin/experiments", AB)
        assert resp.status_code == 201, resp.text
        assert resp.json()["status"] == "running" and resp.json()["created_at"]
        assert_error(post(h, "/v1/admin/experiments", AB), 409, "experiment_exists")
        listed = get(h, "/v1/admin/experiments").json()["experiments"]
        assert [e["experiment_id"] for e in listed] == ["exp"]

        traffic(h, 400, {"control": 0.1, "treatment": 0.1})
        shown = get(h, "/v1/admin/experiments/exp")
        assert shown.status_code == 200, shown.text
        report = shown.json()["report"]
        assert sum(v["impressions"] for v in report["variants"]) == 400
        assert report["winner"] is None and report["srm_p_value"] is not None
        assert report["variants"][1]["vs_control"]["ctr"]["test"] in ("z", "fisher")
        assert get(h, "/v1/admin/experiments/exp", metric="conversion_rate").json()["report"]["metric"] == (
            "conversion_rate"
        )
        assert_error(get(h, "/v1/admin/experiments/nope"), 404, "unknown_experiment")

        stopped = post(h, "/v1/admin/experiments/exp/stop")
        assert stopped.status_code == 200 and stopped.json()["status"] == "stopped"
        assert_error(post(h, "/v1/admin/experiments/nope/stop"), 404, "unknown_experiment")


def test_bad_experiments_are_refused_with_the_reason() -> None:
    with harness() as h:

        def refused(body: dict[str, Any], code: str, words: str) -> None:
            resp = post(h, "/v1/admin/experiments", body)
            assert_error(resp, 422, code)
            assert words in resp.json()["error"]["message"], resp.text

        shares = {**AB, "variants": [{"name": "a", "share": 0.5}, {"name": "b", "share": 0.6}]}
        refused(shares, "invalid_experiment", "shares must add up to 1")
        twins = {**AB, "variants": [{"name": "a", "share": 0.5}, {"name": "a", "share": 0.5}]}
        refused(twins, "invalid_experiment", "unique")
        refused({**AB, "control": "zzz"}, "invalid_experiment", "not one of the variants")
        refused(AB, "unknown_model_version", "model v2 does not exist")
        weights = {
            **AB,
            "variants": [{"name": "a", "share": 0.5, "overrides": {"session_weight": 2}}, AB["variants"][0]],
        }
        refused(weights, "invalid_request", "session_weight")
        refused({**AB, "experiment_id": "a/b"}, "invalid_request", "experiment_id")
        refused({**AB, "status": "promoted"}, "invalid_request", "status")
        assert_error(post(h, "/v1/admin/experiments", AB, key=READ), 403, "forbidden")
        assert h.experiments.list() == []


def test_promote_needs_a_significant_winner_or_force_and_records_the_evidence() -> None:
    with harness() as h:
        h.registry.publish(model_files(seed=1), {})  # v2
        assert post(h, "/v1/admin/experiments", AB).status_code == 201
        traffic(h, 300, {"control": 0.10, "treatment": 0.11})
        refused = post(h, "/v1/admin/experiments/exp/promote")
        assert_error(refused, 409, "no_winner")
        assert refused.json()["report"]["winner"] is None
        weak = post(h, "/v1/admin/experiments/exp/promote", {"variant": "treatment"})
        assert_error(weak, 409, "not_significant")
        assert weak.json()["report"]["experiment_id"] == "exp"
        assert_error(
            post(h, "/v1/admin/experiments/exp/promote", {"variant": "x", "force": True}),
            404,
            "unknown_variant",
        )
        assert h.registry.champion().version == 1  # type: ignore[union-attr]

        forced = post(h, "/v1/admin/experiments/exp/promote", {"variant": "treatment", "force": True})
        assert forced.status_code == 200, forced.text
        body = forced.json()
        assert (body["version"], body["previous_version"]) == ("2", "1")
        assert body["experiment"]["status"] == "promoted" and body["experiment"]["winner"] == "treatment"
        assert h.registry.get(2).online["forced"] is True and h.registry.get(2).online["decided_by"] == "api"
        h.wait_for_version(2)  # serving loads the new champion through its usual polling
        assert_error(post(h, "/v1/admin/experiments/exp/promote"), 409, "already_promoted")


def test_promote_the_significant_winner_without_naming_it() -> None:
    with harness() as h:
        h.registry.publish(model_files(seed=1), {})
        post(h, "/v1/admin/experiments", AB)
        traffic(h, 4000, {"control": 0.10, "treatment": 0.14})
        resp = post(h, "/v1/admin/experiments/exp/promote", {"metric": "ctr"})
        assert resp.status_code == 200, resp.text
        evidence = h.registry.get(2).online
        assert evidence["forced"] is False and evidence["report"]["winner"] == "treatment"
        assert evidence["report"]["variants"][1]["vs_control"]["ctr"]["significant"]


def test_shadow_report_over_http() -> None:
    with harness() as h:
        live = impression("r1", "u1", ("a", "b"), minutes=recent(10))
        shadow = impression("r1", "u1", ("x", "b"), version="9", minutes=recent(10), shadow=True)
        h.impression_store.insert_impressions([live, shadow])
        h.events.insert_events([event("n1", None, item="x", user="u1", minutes=recent(9))])
        resp = get(h, "/v1/admin/shadow", since="1h")
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert (body["pairs"], body["shadow_hits"], body["live_hits"]) == (1, 1, 0)
        assert body["window_s"] == h.settings.consumer.attribution.window_s
        assert body["difference"]["test"] == "mcnemar"
        assert_error(get(h, "/v1/admin/shadow", since="-1h"), 422, "invalid_request")


def test_a_wrong_method_lists_every_method_of_the_path() -> None:
    with harness() as h:
        resp = h.client.request("OPTIONS", "/v1/admin/experiments", headers=AUTH)
        assert_error(resp, 405, "method_not_allowed")
        assert resp.headers["allow"] == "GET, POST"
        assert h.client.delete("/v1/admin/online", headers=AUTH).headers["allow"] == "GET"
