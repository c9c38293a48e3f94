"""deploy/kubernetes: well-formed and schema-valid objects, native gRPC probes on the right health services, ports
and variables that match Baton's configuration, a shutdown budget that fits, and a locked-down pod."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import SecretStr
from typer.testing import CliRunner

from baton.cli.app import app
from baton.config import SECTIONS, env_name, load_config

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "kubernetes"
#: The Kubernetes version whose schemas the objects are checked against (native gRPC probes are GA since 1.27).
KUBERNETES_VERSION = "1.30.0"
#: Variables read by the OpenTelemetry SDK itself rather than by baton.config.
SDK_VARIABLES = {"OTEL_RESOURCE_ATTRIBUTES"}


def settings() -> dict[str, bool]:
    """Every Baton setting's variable → whether it is a secret."""
    return {
        env_name(name, section): "SecretStr" in str(field.annotation)
        for section in SECTIONS
        for name, field in section.model_fields.items()
    }


def documents() -> list[dict[str, Any]]:
    """Every object of the manifests the kustomization lists."""
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    docs: list[dict[str, Any]] = []
    for resource in kustomization["resources"]:
        docs.extend(doc for doc in yaml.safe_load_all((K8S / resource).read_text()) if doc is not None)
    return docs


def one(kind: str, name: str | None = None) -> dict[str, Any]:
    [found] = [d for d in documents() if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    return found


def pod_spec() -> dict[str, Any]:
    spec: dict[str, Any] = one("Deployment")["spec"]["template"]["spec"]
    return spec


def server_container() -> dict[str, Any]:
    [container] = [c for c in pod_spec()["containers"] if c["name"] == "baton"]
    return container


def environment() -> dict[str, str]:
    """The variables the ConfigMap and the Secret give the pod."""
    return {**one("ConfigMap")["data"], **one("Secret")["stringData"]}


def test_every_yaml_file_parses_and_the_kustomization_lists_them_all() -> None:
    for path in sorted((ROOT / "deploy").rglob("*.y*ml")):
        docs = [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]
        assert docs, f"{path} holds no YAML document"
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == on_disk


def test_expected_kinds() -> None:
    kinds = sorted((d["kind"], d["metadata"]["name"]) for d in documents())
    assert kinds == [
        ("ConfigMap", "baton-config"),
        ("Deployment", "baton"),
        ("NetworkPolicy", "baton"),
        ("PodDisruptionBudget", "baton"),
        ("Secret", "baton-secrets"),
        ("Service", "baton"),
        ("Service", "baton-headless"),
    ]


def test_objects_match_the_kubernetes_schemas() -> None:
    from kubernetes_validate import utils

    for doc in documents():
        utils.validate(doc, KUBERNETES_VERSION, strict=True)  # raises on unknown or mistyped fields


def test_probes_are_native_grpc_on_the_health_services() -> None:
    container = server_container()
    assert container["readinessProbe"]["grpc"] == {"port": 50051, "service": ""}
    assert container["livenessProbe"]["grpc"] == {"port": 50051, "service": "liveness"}
    assert container["startupProbe"]["grpc"] == {"port": 50051, "service": "liveness"}


def test_ports_match_the_configuration() -> None:
    config = load_config(environment())
    assert config.server.host == "0.0.0.0"
    assert config.server.metrics_host == "0.0.0.0"
    ports = {p["name"]: p["containerPort"] for p in server_container()["ports"]}
    assert (
        ports
        == {"grpc": config.server.port, "metrics": config.server.metrics_port}
        == {
            "grpc": 50051,
            "metrics": 9464,
        }
    )
    exposed = re.search(r"^EXPOSE (.+)$", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    assert exposed is not None
    assert set(exposed.group(1).split()) == {"50051", "9464"}
    for service in (d for d in documents() if d["kind"] == "Service"):
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in ports, service["metadata"]["name"]
            assert port["port"] == ports[port["targetPort"]]
    annotations = one("Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(config.server.metrics_port)
    policy_ports = {p["port"] for rule in one("NetworkPolicy")["spec"]["ingress"] for p in rule["ports"]}
    assert policy_ports == {50051, 9464}


def test_selectors_match_the_pods() -> None:
    deployment = one("Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    selectors = [
        deployment["spec"]["selector"]["matchLabels"],
        one("PodDisruptionBudget")["spec"]["selector"]["matchLabels"],
        one("NetworkPolicy")["spec"]["podSelector"]["matchLabels"],
        *(d["spec"]["selector"] for d in documents() if d["kind"] == "Service"),
    ]
    for selector in selectors:
        assert selector.items() <= labels.items()
    assert one("PodDisruptionBudget")["spec"]["maxUnavailable"] < deployment["spec"]["replicas"]


def test_configuration_names_are_baton_settings_and_secrets_are_in_the_secret() -> None:
    known = settings()
    config_map, secret = one("ConfigMap")["data"], one("Secret")["stringData"]
    assert not set(config_map) - set(known), "unknown settings in the ConfigMap"
    assert not set(secret) - set(known), "unknown settings in the Secret"
    assert not [name for name in config_map if known[name]], "secret settings belong in the Secret"
    assert set(secret) == {name for name, is_secret in known.items() if is_secret}
    assert all(isinstance(value, str) for value in {**config_map, **secret}.values()), "values must be strings"
    for container in [*pod_spec()["initContainers"], *pod_spec()["containers"]]:
        names = {variable["name"] for variable in container.get("env", [])}
        baton_names = {n for n in names if n.startswith(("BATON_", "OTEL_"))}
        assert not baton_names - set(known) - SDK_VARIABLES, container["name"]
        sources = container["envFrom"]
        assert {"configMapRef": {"name": "baton-config"}} in sources, container["name"]
        assert {"secretRef": {"name": "baton-secrets"}} in sources, container["name"]


def test_the_configuration_loads_and_the_shutdown_fits_the_grace_period() -> None:
    config = load_config(environment())
    assert config.storage.backend == "postgresql"
    assert config.storage.auto_migrate is False  # the init container migrates
    assert isinstance(config.auth.jwt_secret, SecretStr)
    assert config.telemetry.traces_exporter == "otlp"
    budget = config.server.drain_seconds + config.server.grace_seconds
    assert pod_spec()["terminationGracePeriodSeconds"] > budget + 5  # and time to flush telemetry, close the pool
    # A Service named `baton` would inject BATON_PORT=tcp://... into the pods.
    assert pod_spec()["enableServiceLinks"] is False


def test_the_init_container_runs_a_real_migrate_command() -> None:
    [init] = pod_spec()["initContainers"]
    assert init["args"] == ["migrate", "up"]
    assert init["image"] == server_container()["image"]
    result = CliRunner().invoke(app, [*init["args"], "--help"])
    assert result.exit_code == 0, result.output
    assert server_container()["args"] == ["serve"]


def test_pod_is_locked_down() -> None:
    spec = pod_spec()
    user = re.search(r"^USER (\d+):(\d+)$", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    assert user is not None
    security = spec["securityContext"]
    assert security["runAsNonRoot"] is True
    assert (security["runAsUser"], security["runAsGroup"]) == (int(user.group(1)), int(user.group(2)))
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["automountServiceAccountToken"] is False
    for container in [*spec["initContainers"], *spec["containers"]]:
        context = container["securityContext"]
        assert context["readOnlyRootFilesystem"] is True, container["name"]
        assert context["allowPrivilegeEscalation"] is False, container["name"]
        assert context["capabilities"] == {"drop": ["ALL"]}, container["name"]
        assert {"cpu", "memory"} <= set(container["resources"]["requests"]), container["name"]
        assert "memory" in container["resources"]["limits"], container["name"]
        assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"], container["name"]


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kustomize_renders() -> None:
    done = subprocess.run(["kubectl", "kustomize", str(K8S)], capture_output=True, text=True, check=False, timeout=60)
    assert done.returncode == 0, done.stderr
    rendered = [d for d in yaml.safe_load_all(done.stdout) if d is not None]
    assert len(rendered) == len(documents())
    images = {
        c["image"] for d in rendered if d["kind"] == "Deployment" for c in d["spec"]["template"]["spec"]["containers"]
    }
    assert images == {"baton:latest"}
