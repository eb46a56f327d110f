"""A/B variants and shadow evaluation in serving, over the experiment store and registry twins."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from core.experiments import Experiment, Variant, assign
from core.settings import ExperimentSettings
from serving.model_port import LoadedModel
from serving.service import RecsQuery
from serving.shadow import sampled
from tests.unit.test_serving_helpers import READ, Harness, category_of, harness, model_files, tiny_loader

FAST = ExperimentSettings(poll_s=0.05)


def wait(condition: Callable[[], object], what: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def start(h: Harness, experiment: Experiment, *, loaded: tuple[str, ...] = ()) -> Experiment:
    """Store ``experiment`` and wait until serving runs it (and has loaded ``loaded`` versions)."""
    stored = h.experiments.create(experiment)
    holder = h.client.app.state.experiments  # type: ignore[attr-defined]
    wait(lambda: any(e.experiment_id == stored.experiment_id for e in holder.by_surface.values()), "poll")
    for version in loaded:
        wait(lambda v=version: v in holder.models, f"model version {version}")  # type: ignore[misc]
    return stored


def users_in(experiment: Experiment, variant: str, n: int = 3) -> list[str]:
    users = [f"u{i}" for i in range(500) if assign(experiment, f"u{i}").name == variant]
    return users[:n]


def ab(treatment_version: str | None = "2", experiment_id: str = "exp-1", **treatment: Any) -> Experiment:
    return Experiment(
        experiment_id=experiment_id,
        variants=[
            Variant(name="control", share=0.5),
            Variant(name="treatment", share=0.5, model_version=treatment_version, **treatment),
        ],
        surfaces=["recommendations", "similar"],
    )


def test_every_answer_says_its_variant_and_assignment_is_stable() -> None:
    with harness(experiments=FAST) as h:
        # v2 clusters differently: its answers are told apart from the champion's by model_version.
        v2 = h.registry.publish(model_files(seed=1, users={"alice": "music"}), {})
        exp = start(h, ab(str(v2)), loaded=(str(v2),))
        for variant, version in (("control", "1"), ("treatment", str(v2))):
            for user in users_in(exp, variant):
                h.realtime.record(user, "games-2")
                answers = [h.recs(user, k=4) for _ in range(3)]  # a cache miss, then hits
                for body in answers:
                    assert (body["experiment_id"], body["variant"]) == ("exp-1", variant)
                    assert body["model_version"] == version and "variant_fallback" not in body
                imps = [i for i in h.impressions if i.user_id == user]
                assert [(i.experiment_id, i.variant, i.model_version) for i in imps] == [
                    ("exp-1", variant, version)
                ] * 3
                similar = h.get("/v1/items/games-1/similar", k=2, user_id=user).json()
                assert (similar["variant"], similar["model_version"]) == (variant, version)
        # Anonymous similar items are not assigned (shoppers are assigned by id).
        anonymous = h.get("/v1/items/games-1/similar", k=2).json()
        assert (anonymous["experiment_id"], anonymous["variant"], anonymous["model_version"]) == (
            None,
            None,
            "1",
        )
        # Not split: no experiment fields.
        assert "variant" not in h.get("/v1/popular").json()
        # A stopped experiment stops splitting at the next poll.
        h.experiments.update("exp-1", status="stopped")
        wait(lambda: not h.client.app.state.experiments.by_surface, "stop")  # type: ignore[attr-defined]
        user = users_in(exp, "treatment", 1)[0]
        body = h.recs(user, k=2)
        assert (body["experiment_id"], body["variant"], body["model_version"]) == (None, None, "1")


def test_missing_variant_model_falls_back_to_control_and_says_so() -> None:
    with harness(experiments=FAST) as h:
        exp = start(h, ab("99"))  # never published
        user = users_in(exp, "treatment", 1)[0]
        body = h.recs(user, k=3)
        assert (body["experiment_id"], body["variant"], body["model_version"]) == ("exp-1", "control", "1")
        assert "model version 99" in body["variant_fallback"] and "control" in body["variant_fallback"]
        imp = h.impressions[-1]
        assert (imp.experiment_id, imp.variant, imp.model_version) == ("exp-1", "control", "1")
        # The shoppers assigned to control are served as usual, without a fallback note.
        plain = h.recs(users_in(exp, "control", 1)[0], k=3)
        assert plain["variant"] == "control" and "variant_fallback" not in plain
        metrics = h.get("/metrics").text
        assert 'streamrec_serving_fallbacks_total{kind="variant_control"}' in metrics


def test_a_variant_model_that_fails_to_load_is_refused_once_and_falls_back() -> None:
    with harness(experiments=FAST) as h:
        bad = h.registry.publish({"model.json": b"not a model"}, {})
        exp = start(h, ab(str(bad)))
        holder = h.client.app.state.experiments  # type: ignore[attr-defined]
        wait(lambda: str(bad) in holder.refused, "refusal")
        body = h.recs(users_in(exp, "treatment", 1)[0], k=2)
        assert body["variant"] == "control" and body["model_version"] == "1"
        assert f"model version {bad}" in body["variant_fallback"] and "corrupt" in body["variant_fallback"]
        time.sleep(0.2)  # more polls: a refused version is not loaded again
        assert h.get("/metrics").text.count("streamrec_serving_model_load_failures_total 1.0") == 1


def where(user: str, variant: str, **treatment: Any) -> Experiment:
    """An experiment (same arms, its own id) that assigns ``user`` to ``variant``."""
    for n in range(100):
        exp = ab(None, experiment_id=f"exp-{n}", **treatment)
        if assign(exp, user).name == variant:
            return exp
    raise AssertionError("no such experiment id")


def test_cache_never_hands_one_variants_list_to_another() -> None:
    with harness(experiments=FAST) as h:
        # Same model for both arms; only the setting override differs, so the model tag cannot
        # tell the lists apart: the variant in the cache key must.
        exp = where("alice", "treatment", overrides={"session_weight": 1.0})
        h.realtime.record("alice", "tools-4")  # long-term books, a session in tools
        before = h.recs("alice", k=5)
        time.sleep(0.1)  # the cache fill
        assert h.recs("alice", k=5)["items"] == before["items"]  # a hit
        start(h, exp)
        after = h.recs("alice", k=5)
        assert after["variant"] == "treatment" and after["items"] != before["items"]
        assert {category_of(i["item_id"]) for i in after["items"]} == {"tools"}
        time.sleep(0.1)
        keys = sorted(params for uid, params in h.realtime.cache if uid == "alice")
        assert len(keys) == 2 and keys[1].endswith(f":v{exp.experiment_id}/treatment"), keys
        assert h.recs("alice", k=5)["items"] == after["items"]  # the variant's own hit
        q = RecsQuery("alice", 5, frozenset(), None)
        assert len({q.cache_params("e/control"), q.cache_params("e/treatment"), q.cache_params()}) == 3


def test_session_weight_override_applies_to_its_variant_only() -> None:
    with harness(experiments=FAST) as h:
        h.realtime.record("alice", "tools-4")  # long-term books, a session in tools
        start(h, where("alice", "control", overrides={"session_weight": 1.0}))
        mixed = {category_of(i["item_id"]) for i in h.recs("alice", k=5)["items"]}
        assert "books" in mixed  # control: the deployment's session_weight (0.5)
        h.experiments.update(next(iter(h.experiments.items)), status="stopped")
        start(h, where("alice", "treatment", overrides={"session_weight": 1.0}))
        assert {category_of(i["item_id"]) for i in h.recs("alice", k=5)["items"]} == {"tools"}


class GatedModel:
    """The shadow model: its vector search waits for ``gate`` (a slow model, under test control)."""

    def __init__(self, inner: Any, gate: threading.Event) -> None:
        self.inner, self.gate = inner, gate

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    @property
    def n_items(self) -> int:
        return int(self.inner.n_items)

    def recommend(self, query: Any, k: int, exclude: Any = ()) -> Any:
        assert self.gate.wait(10), "gate never opened"
        return self.inner.recommend(query, k, exclude)


def gated_loader(version: str, gate: threading.Event) -> Callable[[dict[str, bytes], Any], LoadedModel]:
    def load(files: dict[str, bytes], record: Any) -> LoadedModel:
        loaded = tiny_loader(files, record)
        if str(record.version) != version:
            return loaded
        return LoadedModel(GatedModel(loaded.model, gate), loaded.version, index="exact")

    return load


def test_shadow_lists_are_sampled_computed_off_path_and_logged() -> None:
    gate = threading.Event()
    shadow = ExperimentSettings(poll_s=0.05, shadow_version="2", shadow_fraction=0.5, shadow_queue_max=50)
    with harness(experiments=shadow, loader=gated_loader("2", gate)) as h:
        h.registry.publish(model_files(seed=1, users={"alice": "music"}), {})
        holder = h.client.app.state.experiments  # type: ignore[attr-defined]
        wait(lambda: "2" in holder.models, "shadow model")
        ids = [f"req-{n}" for n in range(12)]
        chosen = [rid for rid in ids if sampled(rid, 0.5)]
        assert 0 < len(chosen) < len(ids)
        for rid in ids:
            resp = h.client.get(
                "/v1/users/alice/recommendations",
                params={"k": 3},
                headers={"X-API-Key": READ, "X-Request-ID": rid},
            )
            # Answered while the shadow model is still stuck in its search: nothing waits for it.
            assert resp.status_code == 200 and resp.json()["model_version"] == "1"
        assert not any(i.shadow for i in h.impressions)
        gate.set()
        wait(lambda: sum(i.shadow for i in h.impressions) == len(chosen), "shadow impressions")
        shadows = {i.request_id: i for i in h.impressions if i.shadow}
        assert sorted(shadows) == sorted(chosen)
        for rid, imp in shadows.items():
            assert imp.impression_id == f"{rid}:shadow" and imp.model_version == "2"
            assert imp.user_id == "alice" and imp.surface == "recommendations" and imp.variant is None
            # The shadow model (alice likes music there) ranked it, with the live request's inputs.
            assert {category_of(s.item_id) for s in imp.items} == {"music"} and len(imp.items) == 3
        live = [i for i in h.impressions if not i.shadow]
        assert len(live) == len(ids) and all(i.model_version == "1" for i in live)
        assert f"streamrec_serving_shadow_lists_total {float(len(chosen))}" in h.get("/metrics").text


def test_shadow_queue_full_is_skipped_and_counted() -> None:
    gate = threading.Event()
    shadow = ExperimentSettings(poll_s=0.05, shadow_version="2", shadow_fraction=1.0, shadow_queue_max=1)
    with harness(experiments=shadow, loader=gated_loader("2", gate)) as h:
        h.registry.publish(model_files(seed=1), {})
        holder = h.client.app.state.experiments  # type: ignore[attr-defined]
        wait(lambda: "2" in holder.models, "shadow model")
        for _ in range(5):  # one in the worker's hands, one queued, three skipped
            assert h.get("/v1/users/alice/recommendations", k=2).status_code == 200
        metrics = h.client.app.state.metrics  # type: ignore[attr-defined]
        skipped = metrics.shadow_skipped.labels(reason="queue_full")._value.get()
        assert skipped >= 3
        gate.set()
        wait(lambda: sum(i.shadow for i in h.impressions) == 5 - skipped, "shadow impressions")
