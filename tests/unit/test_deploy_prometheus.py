"""deploy/prometheus/prometheus.yml scrapes the ports the roles really expose."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import yaml

from core.settings import ConsumerSettings, RetrainSettings, ServingSettings

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_FILE = ROOT / "deploy" / "prometheus" / "prometheus.yml"
ROLE_SERVICES = ("consumer", "retrain", "serving")


def load_yaml(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def services() -> dict[str, Any]:
    result = load_yaml(ROOT / "docker-compose.yml")["services"]
    assert isinstance(result, dict)
    return result


def jobs() -> dict[str, dict[str, Any]]:
    return {job["job_name"]: job for job in load_yaml(PROMETHEUS_FILE)["scrape_configs"]}


def env_of(service: str) -> dict[str, str]:
    return {str(k): str(v) for k, v in (services()[service].get("environment") or {}).items()}


def targets(job: dict[str, Any]) -> set[tuple[str, int]]:
    """(host, port) pairs from static_configs and Docker-DNS dns_sd_configs."""
    found: set[tuple[str, int]] = set()
    for static in job.get("static_configs", []):
        for target in static["targets"]:
            host, port = target.rsplit(":", 1)
            found.add((host, int(port)))
    for dns in job.get("dns_sd_configs", []):
        assert dns.get("type") == "A", "Docker's embedded DNS answers A records, not SRV"
        found |= {(name, int(dns["port"])) for name in dns["names"]}
    return found


def effective_port(service: str, variable: str, default: int) -> int:
    return int(env_of(service).get(variable, default))


def source_mentions(needle: str, *packages: str) -> bool:
    return any(
        needle in p.read_text(encoding="utf-8") for pkg in packages for p in (ROOT / pkg).rglob("*.py")
    )


def test_every_role_has_a_scrape_job_on_its_compose_service() -> None:
    configured = jobs()
    for role in ROLE_SERVICES:
        assert role in configured, f"no scrape job for {role}"
        hosts = {host for host, _ in targets(configured[role])}
        assert hosts == {role}, f"{role} job scrapes {hosts}, not the compose service"


def test_consumer_is_discovered_through_docker_dns_so_every_replica_is_scraped() -> None:
    dns = jobs()["consumer"]["dns_sd_configs"]
    assert dns and dns[0]["names"] == ["consumer"] and dns[0]["type"] == "A"
    assert not jobs()["consumer"].get("static_configs")


def test_consumer_port_matches_its_metrics_setting() -> None:
    port = effective_port("consumer", "STREAMREC_CONSUMER__METRICS_PORT", ConsumerSettings().metrics_port)
    assert targets(jobs()["consumer"]) == {("consumer", port)}
    assert str(port) in [str(p) for p in services()["consumer"].get("expose", [])]
    assert source_mentions("consumer.metrics_port", "consumer", "cli"), (
        "nothing starts the consumer metrics server"
    )


def test_retrain_port_matches_its_metrics_setting() -> None:
    port = effective_port("retrain", "STREAMREC_RETRAIN__METRICS_PORT", RetrainSettings().metrics_port)
    assert targets(jobs()["retrain"]) == {("retrain", port)}
    assert str(port) in [str(p) for p in services()["retrain"].get("expose", [])]
    assert source_mentions("retrain.metrics_port", "retrain", "cli"), (
        "nothing starts the retrain metrics server"
    )


def test_serving_port_matches_the_serve_command_and_settings() -> None:
    serving = services()["serving"]
    command = serving["command"]
    argv = shlex.split(command) if isinstance(command, str) else [str(c) for c in command]
    command_port = int(argv[argv.index("--port") + 1])
    env_port = effective_port("serving", "STREAMREC_SERVING__PORT", ServingSettings().port)
    assert command_port == env_port
    container_ports = {int(str(p).rsplit(":", 1)[-1].split("/")[0]) for p in serving.get("ports", [])}
    assert command_port in container_ports
    job = jobs()["serving"]
    assert targets(job) == {("serving", command_port)}
    assert job.get("metrics_path", "/metrics") == "/metrics"


def test_prometheus_service_mounts_this_config() -> None:
    prometheus = services()["prometheus"]
    config_flag = next(arg for arg in prometheus["command"] if arg.startswith("--config.file="))
    mounted = {v.split(":")[1]: v.split(":")[0] for v in prometheus["volumes"]}
    assert mounted[config_flag.split("=", 1)[1]] == "./deploy/prometheus/prometheus.yml"
