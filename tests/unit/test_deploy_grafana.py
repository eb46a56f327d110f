"""The provisioned Grafana dashboard only queries metrics the code really exports.

Exported names come from the source of the roles (prometheus_client `Counter(`/`Gauge(`/
`Histogram(`/`Summary(` calls, read with `ast`) plus, when serving uses
prometheus-fastapi-instrumentator, the names its defaults produce on a throwaway app.
"""

from __future__ import annotations

import ast
import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DASHBOARD_FILE = DEPLOY / "grafana" / "dashboards" / "streamrec.json"
DATASOURCE_FILE = DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
PROVIDER_FILE = DEPLOY / "grafana" / "provisioning" / "dashboards" / "streamrec.yml"
ROLE_PACKAGES = ("consumer", "retrain", "serving")

# What the issue asks the dashboard to show; each must be queried by some panel.
REQUIRED_QUERIES = {
    "events/s by type": "streamrec_consumer_events_total",
    "dead-letter rate": "streamrec_consumer_events_total",
    "consumer batch latency": "streamrec_consumer_batch_seconds_bucket",
    "retrain candidate NDCG": "streamrec_retrain_candidate_ndcg",
    "retrain champion NDCG": "streamrec_retrain_champion_ndcg",
    "retrain duration": "streamrec_retrain_duration_seconds",
    "model version": "streamrec_retrain_model_version",
    "serving requests/s": "http_requests_total",
    "serving p99 latency": "http_request_duration_seconds_bucket",
    "cache hits": "streamrec_serving_cache_hits_total",
    "cache misses": "streamrec_serving_cache_misses_total",
    "degraded responses": "streamrec_serving_degraded_responses_total",
    "impressions (CTR denominator)": "streamrec_consumer_impressions_total",
    "attributed clicks and purchases": "streamrec_consumer_attributed_events_total",
}

_METRIC_CLASSES = {"Counter", "Gauge", "Histogram", "Summary", "Info", "Enum"}
_PROMQL_KEYWORDS = {
    "and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring",
    "group_left", "group_right", "inf", "nan", "atan2",
}  # fmt: skip


def exposed_samples(kind: str, name: str) -> set[str]:
    """The sample names prometheus-client exposes for one metric object."""
    if kind == "Counter":
        base = name.removesuffix("_total")
        return {f"{base}_total", f"{base}_created"}
    if kind == "Histogram":
        return {f"{name}_bucket", f"{name}_sum", f"{name}_count", f"{name}_created"}
    if kind == "Summary":
        return {name, f"{name}_sum", f"{name}_count", f"{name}_created"}
    if kind == "Info":
        return {f"{name}_info"}
    return {name}


def _constant(node: ast.expr | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _callee_name(func: ast.expr) -> str:
    if isinstance(func, ast.Attribute):  # prometheus_client.Counter(...)
        return func.attr
    return func.id if isinstance(func, ast.Name) else ""


def declared_metrics(package: str) -> dict[str, str]:
    """Full metric name -> prometheus_client class, from every `.py` file of one package."""
    found: dict[str, str] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            kind = _callee_name(node.func)
            if kind not in _METRIC_CLASSES:
                continue
            keywords = {kw.arg: kw.value for kw in node.keywords if kw.arg}
            name = _constant(node.args[0] if node.args else keywords.get("name"))
            if name is None:
                continue
            parts = [_constant(keywords.get("namespace")), _constant(keywords.get("subsystem")), name]
            full = "_".join(p for p in parts if p)
            unit = _constant(keywords.get("unit"))
            if unit and not full.endswith("_" + unit):
                full = f"{full}_{unit}"
            found[full] = kind
    return found


def instrumentator_samples() -> set[str]:
    """Sample names of prometheus-fastapi-instrumentator's defaults, on a throwaway app."""
    from fastapi import FastAPI
    from fastapi.testclient import TestClient
    from prometheus_client import CollectorRegistry
    from prometheus_fastapi_instrumentator import Instrumentator

    app = FastAPI()

    @app.get("/probe")
    def probe() -> dict[str, bool]:
        return {"ok": True}

    registry = CollectorRegistry()
    Instrumentator(registry=registry).instrument(app)
    with TestClient(app) as client:
        assert client.get("/probe").status_code == 200
    return {sample.name for family in registry.collect() for sample in family.samples}


@cache
def exported_samples() -> frozenset[str]:
    names: set[str] = set()
    for package in ROLE_PACKAGES:
        for name, kind in declared_metrics(package).items():
            names |= exposed_samples(kind, name)
    serving_source = "".join(p.read_text(encoding="utf-8") for p in (ROOT / "serving").rglob("*.py"))
    if "Instrumentator" in serving_source:
        names |= instrumentator_samples()
    return frozenset(names)


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression (not functions, labels, keywords or durations)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w.$])[A-Za-z_:][A-Za-z0-9_:]*", text):
        if re.match(r"\s*\(", text[match.end() :]) or match.group(0).lower() in _PROMQL_KEYWORDS:
            continue
        names.add(match.group(0))
    return names


def dashboard() -> dict[str, Any]:
    data = json.loads(DASHBOARD_FILE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def panels() -> list[dict[str, Any]]:
    flat: list[dict[str, Any]] = []
    for panel in dashboard()["panels"]:
        flat.append(panel)
        flat.extend(panel.get("panels", []))
    return [p for p in flat if p.get("type") != "row"]


def exprs() -> list[tuple[str, str]]:
    return [(p["title"], t["expr"]) for p in panels() for t in p.get("targets", [])]


def test_promql_parser_finds_metrics_and_skips_the_rest() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le, handler) (rate(a_seconds_bucket{outcome="x",le!="1"}'
        "[$__rate_interval]))) / clamp_min(sum(rate(b_total[5m] offset 1h)) + on(job) c, 1e-9)"
    )
    assert metric_names(expr) == {"a_seconds_bucket", "b_total", "c"}


def test_exposed_samples_follow_prometheus_client_suffixes() -> None:
    assert exposed_samples("Counter", "x_events_total") == {"x_events_total", "x_events_created"}
    assert "x_seconds_bucket" in exposed_samples("Histogram", "x_seconds")
    assert exposed_samples("Gauge", "x_version") == {"x_version"}


def test_dashboard_parses_and_every_panel_queries_prometheus() -> None:
    data = dashboard()
    assert data["uid"] and data["title"]
    datasource_uid = yaml.safe_load(DATASOURCE_FILE.read_text(encoding="utf-8"))["datasources"][0]["uid"]
    assert panels()
    ids = [p["id"] for p in dashboard()["panels"]]
    assert len(ids) == len(set(ids))
    for panel in panels():
        assert panel["datasource"]["uid"] == datasource_uid, panel["title"]
        assert panel.get("targets"), f"panel {panel['title']!r} has no query"
        for target in panel["targets"]:
            assert metric_names(target["expr"]), f"{panel['title']!r}: no metric in {target['expr']!r}"


def test_dashboard_covers_the_required_panels() -> None:
    queried = {name for _, expr in exprs() for name in metric_names(expr)}
    missing = {what: name for what, name in REQUIRED_QUERIES.items() if name not in queried}
    assert not missing
    all_exprs = " ".join(expr for _, expr in exprs())
    assert 'outcome="dead_lettered"' in all_exprs
    assert "histogram_quantile(0.5," in all_exprs and "histogram_quantile(0.99," in all_exprs


def test_dashboard_metrics_are_exported_by_the_code() -> None:
    exported = exported_samples()
    missing = sorted(
        {(name, title) for title, expr in exprs() for name in metric_names(expr) if name not in exported}
    )
    assert not missing, "dashboard queries metrics the code does not export:\n" + "\n".join(
        f"  {name}  (panel {title!r})" for name, title in missing
    )


def test_grafana_provisioning_matches_the_compose_mounts() -> None:
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))["services"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in services["grafana"]["volumes"]}
    assert mounts["/etc/grafana/provisioning"] == "./deploy/grafana/provisioning"
    provider = yaml.safe_load(PROVIDER_FILE.read_text(encoding="utf-8"))["providers"][0]
    dashboards_dir = provider["options"]["path"]
    assert mounts[dashboards_dir] == "./deploy/grafana/dashboards"
    datasource = yaml.safe_load(DATASOURCE_FILE.read_text(encoding="utf-8"))["datasources"][0]
    assert datasource["type"] == "prometheus"
    assert datasource["url"] == "http://prometheus:9090"
    assert "prometheus" in services


def test_online_quality_panels_split_ctr_and_conversion_by_model_version_and_variant() -> None:
    """Issue 14: CTR (attributed clicks / impressions) and conversion (attributed purchases /
    impressions), each by model version and by experiment variant."""
    ratios = [
        expr
        for _, expr in exprs()
        if "streamrec_consumer_attributed_events_total" in expr
        and "streamrec_consumer_impressions_total" in expr
    ]
    wanted = {(t, by) for t in ("click", "purchase") for by in ("model_version", "variant")}
    found = {
        (t, by)
        for t, by in wanted
        for expr in ratios
        if f'event_type="{t}"' in expr and expr.count(f"sum by ({by})") == 2 and " / " in expr
    }
    assert found == wanted
