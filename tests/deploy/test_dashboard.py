"""The Grafana dashboard: it loads, its provisioning points at it, and every metric its PromQL queries is exported
by a real Baton server after a little traffic (histograms through their _bucket/_sum/_count series)."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from google.protobuf import duration_pb2
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from baton.v1 import (
    auth_pb2,
    auth_pb2_grpc,
    handlers_pb2,
    handlers_pb2_grpc,
    tasks_pb2,
    tasks_pb2_grpc,
    workers_pb2,
    workers_pb2_grpc,
)
from tests.support.server import RunningServer, server  # noqa: F401 - the fixture

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "baton.json"
NS = "deploy-check"

#: Metrics the dashboard must chart (the brief of deploy/: gRPC server, rate limits, domain).
REQUIRED = {
    "grpc_server_started_total",
    "grpc_server_handled_total",
    "grpc_server_handling_seconds_bucket",
    "baton_ratelimit_rejected_total",
    "baton_ratelimit_redis_fallback",
    "baton_step_attempts_total",
    "baton_schedule_to_start_seconds_bucket",
    "baton_step_run_seconds_bucket",
    "baton_tasks_created_total",
    "baton_tasks_finished_total",
    "baton_ready_steps",
    "baton_active_leases",
    "baton_active_pollers",
    "baton_sqlite_writer_busy_seconds_total",
    "baton_sqlite_writer_cpu_seconds_total",
    "baton_sqlite_write_transactions_total",
    "baton_sqlite_writes_total",
    "baton_sqlite_write_queue_seconds_bucket",
}

_KEYWORDS = {
    *("and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left", "group_right"),
    *("inf", "nan"),
}


@pytest.fixture
def server_env() -> dict[str, str]:
    """A small anonymous bucket, so a few anonymous Logins get rate limited (admins get 10x)."""
    return {"BATON_RATE_LIMIT_RPS": "1", "BATON_RATE_LIMIT_BURST": "10"}


def load_dashboard() -> dict[str, Any]:
    data = json.loads(DASHBOARD.read_text())
    assert isinstance(data, dict)
    return data


def all_panels(panels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for panel in panels:
        found.append(panel)
        found.extend(all_panels(panel.get("panels", [])))
    return found


def expressions(dashboard: dict[str, Any]) -> list[str]:
    """Every PromQL expression of the dashboard's panels."""
    return [target["expr"] for panel in all_panels(dashboard["panels"]) for target in panel.get("targets", [])]


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (functions, keywords, labels and grouping lists excluded)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\$\w+", " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w.])[a-zA-Z_:][a-zA-Z0-9_:]*", text):
        if text[match.end() :].lstrip().startswith("(") or match.group() in _KEYWORDS:
            continue
        names.add(match.group())
    return names


def dashboard_metrics(dashboard: dict[str, Any]) -> set[str]:
    """Every metric the panels and the template variables (label_values) query."""
    names: set[str] = set()
    for expr in expressions(dashboard):
        names |= metric_names(expr)
    for variable in dashboard["templating"]["list"]:
        query = variable.get("query")
        text = query.get("query", "") if isinstance(query, dict) else str(query)
        names |= set(re.findall(r"label_values\(\s*([a-zA-Z_:][\w:]*)", text))
    return names


def test_metric_name_extraction() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le, grpc_method) (rate(grpc_server_handling_seconds_bucket{grpc_type="unary",'
        ' grpc_service=~"$svc"}[$__rate_interval]))) / on (instance) group_left max(baton_build_info) > bool 0'
    )
    assert metric_names(expr) == {"grpc_server_handling_seconds_bucket", "baton_build_info"}


def test_dashboard_loads_and_is_provisioned() -> None:
    dashboard = load_dashboard()
    assert dashboard["uid"]
    assert dashboard["title"] == "Baton"
    panels = all_panels(dashboard["panels"])
    assert len({p["id"] for p in panels}) == len(panels), "panel ids must be unique"
    for panel in panels:
        if panel["type"] == "row":
            continue
        assert panel["targets"], panel["title"]
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert all(t["expr"].strip() for t in panel["targets"]), panel["title"]
    missing = REQUIRED - dashboard_metrics(dashboard)
    assert not missing, f"the dashboard charts none of {sorted(missing)}"
    provider = yaml.safe_load((DEPLOY / "grafana/provisioning/dashboards/baton.yaml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    sources = yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/datasources.yaml").read_text())
    assert {s["type"] for s in sources["datasources"]} == {"prometheus", "jaeger"}


def _seconds(value: float) -> duration_pb2.Duration:
    return duration_pb2.Duration(seconds=int(value), nanos=int((value - int(value)) * 1e9))


async def _traffic(running: RunningServer) -> dict[str, dict[str, set[str]]]:
    """Register a handler, run tasks to success and failure, hold a lease, leave a step ready, wait in a poll,
    fail authentication and get rate limited; return what /metrics exported meanwhile and after."""
    admin = running.admin
    template = handlers_pb2.StepTemplate(name="only", step_handler="deploy.work")
    handler = handlers_pb2.Handler(namespace=NS, name="check", version="1.0.0", steps=[template])
    await handlers_pb2_grpc.HandlerServiceStub(running.channel).RegisterHandler(
        handlers_pb2.RegisterHandlerRequest(handler=handler), metadata=admin, timeout=10
    )
    tasks = tasks_pb2_grpc.TaskServiceStub(running.channel)
    for _ in range(4):
        await tasks.CreateTask(
            tasks_pb2.CreateTaskRequest(namespace=NS, handler_name="check"), metadata=admin, timeout=10
        )
    workers = workers_pb2_grpc.WorkerServiceStub(running.channel)

    async def lease(step_handler: str = "deploy.work", wait: float = 2.0) -> list[Any]:
        request = workers_pb2.PollStepsRequest(
            namespace=NS, step_handlers=[step_handler], worker_id="w-deploy", max_steps=1, max_wait=_seconds(wait)
        )
        return list((await workers.PollSteps(request, metadata=admin, timeout=wait + 5)).leases)

    [done] = await lease()
    ref = workers_pb2.LeaseRef(step_id=done.step_id, fencing_token=done.fencing_token)
    await workers.CompleteStep(
        workers_pb2.CompleteStepRequest(worker_id="w-deploy", completions=[workers_pb2.StepCompletion(lease=ref)]),
        metadata=admin,
        timeout=10,
    )
    [failed] = await lease()
    failure = workers_pb2.StepFailure(
        lease=workers_pb2.LeaseRef(step_id=failed.step_id, fencing_token=failed.fencing_token),
        error_type="Boom",
        error_message="deploy check",
        retryable=False,
    )
    await workers.FailStep(
        workers_pb2.FailStepRequest(worker_id="w-deploy", failures=[failure]), metadata=admin, timeout=10
    )
    await lease()  # held: an active lease; the fourth task's step stays ready

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await tasks.GetTask(tasks_pb2.GetTaskRequest(id="nope"), timeout=10)
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    auth = auth_pb2_grpc.AuthServiceStub(running.channel)
    for _ in range(30):
        try:
            await auth.Login(auth_pb2.LoginRequest(username="nobody", password="wrong"), timeout=10)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                break
    else:
        pytest.fail("anonymous Logins were never rate limited")

    waiting = asyncio.create_task(lease("deploy.idle", wait=1.5))  # a poller waiting for work
    await asyncio.sleep(0.5)
    await running.server.runtime.sampler.sample()  # the ready queue and leases, as the sampler reads them every 2 s
    seen = exported_samples()
    assert await waiting == []
    for name, labels in exported_samples().items():
        seen.setdefault(name, {})
        for label, values in labels.items():
            seen[name].setdefault(label, set()).update(values)
    return seen


def exported_samples() -> dict[str, dict[str, set[str]]]:
    """What /metrics serves (the default registry's exposition): sample name → label name → values seen."""
    text = generate_latest(REGISTRY).decode()
    samples: dict[str, dict[str, set[str]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = samples.setdefault(sample.name, {})
            for label, value in sample.labels.items():
                labels.setdefault(label, set()).add(value)
    return samples


def selectors(expr: str) -> list[tuple[str, list[tuple[str, str, str]]]]:
    """Each `metric{label op "value", ...}` of an expression as (metric, [(label, op, value)])."""
    found = []
    for match in re.finditer(r"([a-zA-Z_:][\w:]*)\s*\{([^}]*)\}", expr):
        matchers = re.findall(r'(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"', match.group(2))
        found.append((match.group(1), matchers))
    return found


def grouping_labels(expr: str) -> set[str]:
    """Labels named in `by (...)`, `without (...)`, `on (...)` and `ignoring (...)`."""
    labels: set[str] = set()
    for match in re.finditer(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)", expr):
        labels |= {label.strip() for label in match.group(1).split(",") if label.strip()}
    return labels


async def test_every_dashboard_metric_and_label_is_exported(server: RunningServer) -> None:  # noqa: F811 - the fixture
    exported = await _traffic(server)
    dashboard = load_dashboard()
    missing = sorted(dashboard_metrics(dashboard) - set(exported))
    assert not missing, f"the dashboard queries metrics that /metrics does not export: {missing}"
    for expr in expressions(dashboard):
        metrics = metric_names(expr)
        for metric, matchers in selectors(expr):
            for label, op, value in matchers:
                assert label in exported[metric], f"{metric} has no label {label!r}: {expr}"
                if op == "=" and "$" not in value:
                    assert value in exported[metric][label], f"{metric} never has {label}={value!r}: {expr}"
        available = {label for metric in metrics for label in exported[metric]}
        assert grouping_labels(expr) <= available, f"grouping by labels none of {sorted(metrics)} has: {expr}"
