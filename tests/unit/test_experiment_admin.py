"""storage.experiment_admin over the in-memory twins: create, stop, report and promote with evidence."""

from __future__ import annotations

import pytest

from core.experiments import Experiment, Variant, assign
from model.artifact_erasure import scrub_files
from storage.event_store_memory import InMemoryEventStore
from storage.experiment_admin import (
    ExperimentAdmin,
    ExperimentConflict,
    ExperimentInvalid,
    ExperimentNotFound,
)
from storage.experiments import InMemoryExperimentStore
from storage.impressions import InMemoryImpressionStore
from storage.model_erasure import erasure_digest
from storage.model_registry_memory import InMemoryModelRegistry
from tests.unit.online_fixtures import T0, event, impression

FILES = {"model.json": b"{}"}


def make_admin() -> ExperimentAdmin:
    registry = InMemoryModelRegistry()
    registry.promote(registry.publish(FILES, {}), "first")  # v1 champion
    registry.publish(FILES, {})  # v2 candidate
    events = InMemoryEventStore()
    return ExperimentAdmin(
        experiments=InMemoryExperimentStore(),
        registry=registry,
        impressions=InMemoryImpressionStore(),
        events=events,
        erased_users=events.erased_users,
        scrub=scrub_files,
    )


def ab(experiment_id: str = "exp", version: str = "2", **extra: object) -> Experiment:
    return Experiment(
        experiment_id=experiment_id,
        variants=[
            Variant(name="control", share=0.5),
            Variant(name="treatment", share=0.5, model_version=version),
        ],
        **extra,  # type: ignore[arg-type]
    )


def add_traffic(admin: ExperimentAdmin, exp: Experiment, users: int, ctr: dict[str, float]) -> None:
    """Impressions of ``exp`` and clicks at the given rates, in the twins; the experiment is dated
    back to T0 (created, as every experiment, "now") and its traffic comes a minute later."""
    admin.experiments.update(exp.experiment_id, created_at=T0)
    offset = 1.0
    seen = dict.fromkeys(ctr, 0)
    docs, events = [], []
    for i in range(users):
        name = assign(exp, f"user-{i}").name
        imp = impression(f"req-{i}", f"user-{i}", experiment=exp.experiment_id, variant=name, minutes=offset)
        docs.append(imp)
        seen[name] += 1
        per_mille = round(ctr[name] * 1000)
        if seen[name] * per_mille // 1000 > (seen[name] - 1) * per_mille // 1000:
            events.append(event(f"ev-{i}", imp, minutes=offset + 1))
    admin.impressions.insert_impressions(docs)  # type: ignore[attr-defined]
    admin.events.insert_events(events)  # type: ignore[attr-defined]


def test_create_checks_versions_ids_and_surfaces() -> None:
    admin = make_admin()
    created = admin.create(ab(status="promoted", winner="x"))  # type: ignore[arg-type]
    assert created.status == "running" and created.winner is None and created.created_at is not None
    with pytest.raises(ExperimentConflict, match="already exists") as dup:
        admin.create(ab())
    assert dup.value.code == "experiment_exists"
    with pytest.raises(ExperimentConflict, match="stop it first") as taken:
        admin.create(ab("exp-2"))
    assert taken.value.code == "surface_taken"
    with pytest.raises(ExperimentInvalid, match="model v99 does not exist") as unknown:
        admin.create(ab("exp-3", version="99", surfaces=["similar"]))
    assert unknown.value.code == "unknown_model_version"
    assert admin.create(ab("exp-4", surfaces=["similar"])).experiment_id == "exp-4"
    assert [e.experiment_id for e in admin.list()] == ["exp-4", "exp"]


def test_stop_is_idempotent_and_unknown_ids_are_named() -> None:
    admin = make_admin()
    admin.create(ab())
    stopped = admin.stop("exp")
    assert stopped.status == "stopped" and stopped.stopped_at is not None
    assert admin.stop("exp") == stopped
    with pytest.raises(ExperimentNotFound, match="experiment 'nope' does not exist"):
        admin.stop("nope")
    # A stopped experiment frees its surface.
    admin.create(ab("exp-2"))


def test_promote_makes_the_significant_winner_champion_and_records_the_evidence() -> None:
    admin = make_admin()
    exp = admin.create(ab())
    add_traffic(admin, exp, 4000, {"control": 0.10, "treatment": 0.14})
    admin.events.erase_user("gone")  # type: ignore[attr-defined]
    promotion = admin.promote("exp", decided_by="test")
    assert promotion.record.version == 2 and promotion.previous_version == 1
    registry = admin.registry
    assert registry.champion().version == 2  # type: ignore[union-attr]
    online = registry.get(2).online
    assert online["experiment_id"] == "exp" and online["variant"] == "treatment" and not online["forced"]
    assert online["report"]["winner"] == "treatment" and online["decided_by"] == "test"
    assert registry.get(2).erasure["digest"] == erasure_digest({"gone"})  # scrubbed like any promotion
    done = admin.get("exp")
    assert (done.status, done.winner, done.promoted_version) == ("promoted", "treatment", "2")
    assert done.evidence == online and done.stopped_at is not None
    with pytest.raises(ExperimentConflict) as again:
        admin.promote("exp")
    assert again.value.code == "already_promoted"


def test_promote_is_refused_without_a_significant_winner_unless_forced() -> None:
    admin = make_admin()
    exp = admin.create(ab())
    add_traffic(admin, exp, 300, {"control": 0.10, "treatment": 0.11})
    with pytest.raises(ExperimentConflict) as none:
        admin.promote("exp")
    assert none.value.code == "no_winner" and none.value.report is not None
    assert none.value.report["winner"] is None
    with pytest.raises(ExperimentConflict) as weak:
        admin.promote("exp", "treatment")
    assert weak.value.code == "not_significant" and "force" in weak.value.message
    assert admin.registry.champion().version == 1  # type: ignore[union-attr]
    assert admin.registry.get(2).online == {}
    with pytest.raises(ExperimentNotFound) as unknown:
        admin.promote("exp", "nope", force=True)
    assert unknown.value.code == "unknown_variant"

    promotion = admin.promote("exp", "treatment", force=True)
    assert promotion.record.version == 2 and admin.registry.get(2).online["forced"] is True
    assert "[forced]" in (admin.registry.get(2).reason or "")


def test_a_variant_without_its_own_model_cannot_be_promoted() -> None:
    admin = make_admin()
    exp = admin.create(
        Experiment(
            experiment_id="weights",
            variants=[
                Variant(name="control", share=0.5),
                Variant(name="heavy", share=0.5, overrides={"session_weight": 0.8}),
            ],
        )
    )
    add_traffic(admin, exp, 10, {"control": 0.1, "heavy": 0.1})
    with pytest.raises(ExperimentConflict, match=r"STREAMREC_SERVING__SESSION_WEIGHT=0\.8") as refused:
        admin.promote("weights", "heavy", force=True)
    assert refused.value.code == "nothing_to_promote"
    with pytest.raises(ExperimentConflict, match="serves the champion already"):
        admin.promote("weights", "control", force=True)


def test_promote_refuses_a_version_whose_artifact_is_damaged() -> None:
    admin = make_admin()
    admin.create(ab())
    admin.registry._files[2]["model.json"] = b"changed"  # type: ignore[attr-defined]
    with pytest.raises(ExperimentConflict) as broken:
        admin.promote("exp", "treatment", force=True)
    assert broken.value.code == "artifact_unavailable"
    assert admin.registry.get(2).online == {} and admin.get("exp").status == "running"


def test_report_reads_the_experiments_window_only() -> None:
    admin = make_admin()
    exp = admin.create(ab())
    add_traffic(admin, exp, 200, {"control": 0.1, "treatment": 0.2})
    before = impression("early", "user-x", experiment="exp", variant="control", minutes=-60)
    admin.impressions.insert_impressions([before])  # type: ignore[attr-defined]
    _, report = admin.report("exp")
    assert sum(v["impressions"] for v in report.variants) == 200
