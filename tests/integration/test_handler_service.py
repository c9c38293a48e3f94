"""HandlerService through the real server: validation with exact field paths, immutable versions, NOT_FOUND with
ResourceInfo, pagination, and namespace scoping of developers and viewers."""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import duration_pb2

from baton.v1 import handlers_pb2, handlers_pb2_grpc
from tests.support.accounts import Metadata, create_account, rich_error
from tests.support.server import RunningServer

INVALID = grpc.StatusCode.INVALID_ARGUMENT
DENIED = grpc.StatusCode.PERMISSION_DENIED


def stub(running: RunningServer) -> handlers_pb2_grpc.HandlerServiceStub:
    return handlers_pb2_grpc.HandlerServiceStub(running.channel)


def step(name: str, *depends_on: str, **fields: Any) -> handlers_pb2.StepTemplate:
    return handlers_pb2.StepTemplate(name=name, depends_on=depends_on, step_handler=f"work.{name}", **fields)


def handler(
    *steps: handlers_pb2.StepTemplate, namespace: str = "payments", name: str = "refund", version: str = "1.0.0"
) -> handlers_pb2.Handler:
    steps = steps or (step("validate"), step("pay", "validate"), step("notify", "pay"))
    return handlers_pb2.Handler(namespace=namespace, name=name, version=version, steps=steps)


async def register(running: RunningServer, definition: handlers_pb2.Handler, metadata: Metadata | None = None) -> Any:
    request = handlers_pb2.RegisterHandlerRequest(handler=definition)
    return await stub(running).RegisterHandler(request, metadata=metadata or running.admin, timeout=10)


async def get(running: RunningServer, metadata: Metadata | None = None, **fields: str) -> Any:
    request = handlers_pb2.GetHandlerRequest(**fields)
    return await stub(running).GetHandler(request, metadata=metadata or running.admin, timeout=10)


async def test_register_resolves_defaults_and_get_returns_it(server: RunningServer) -> None:
    policy = handlers_pb2.RetryPolicy(max_attempts=7, jitter=0.25, non_retryable_error_types=["Fraud"])
    definition = handler(
        step("validate"),
        step("pay", "validate", retry_policy=policy, lease_timeout=duration_pb2.Duration(seconds=30), priority=5),
    )
    registered = await register(server, definition)
    validate, pay = registered.steps
    assert validate.retry_policy.max_attempts == 3
    assert validate.retry_policy.initial_backoff.seconds == 1
    assert validate.retry_policy.backoff_coefficient == 2.0
    assert validate.retry_policy.max_backoff.seconds == 300
    assert validate.lease_timeout.seconds == 300
    assert (pay.retry_policy.max_attempts, pay.retry_policy.jitter) == (7, 0.25)
    assert list(pay.retry_policy.non_retryable_error_types) == ["Fraud"]
    assert (pay.lease_timeout.seconds, pay.priority, list(pay.depends_on)) == (30, 5, ["validate"])
    assert registered.HasField("create_time")
    assert len(registered.definition_digest) == 64

    assert await get(server, namespace="payments", name="refund", version="1.0.0") == registered
    assert await get(server, namespace="payments", name="refund") == registered
    assert await register(server, definition) == registered  # same definition: no-op, original create_time


async def test_different_definition_under_a_version_is_already_exists(server: RunningServer) -> None:
    await register(server, handler())
    changed = handler(step("validate"), step("pay", "validate"))
    error = await rich_error(register(server, changed), grpc.StatusCode.ALREADY_EXISTS)
    assert error.info.reason == "HANDLER_VERSION_EXISTS"
    assert dict(error.info.metadata) == {"namespace": "payments", "name": "refund", "version": "1.0.0"}


async def test_cycle_is_named(server: RunningServer) -> None:
    cyclic = handler(step("a", "c"), step("b", "a"), step("c", "b"))
    error = await rich_error(register(server, cyclic), INVALID)
    assert "cycle: a -> c -> b -> a" in error.message
    assert error.violations == {
        "handler.steps[0].depends_on[0]": "cycle: a -> c -> b -> a (each step depends on the next)"
    }


async def test_unknown_dependency_duplicate_steps_and_bad_version(server: RunningServer) -> None:
    error = await rich_error(register(server, handler(step("a"), step("b", "missing"))), INVALID)
    assert list(error.violations) == ["handler.steps[1].depends_on[0]"]
    assert "unknown step 'missing'" in error.violations["handler.steps[1].depends_on[0]"]

    error = await rich_error(register(server, handler(step("a"), step("a"))), INVALID)
    assert list(error.violations) == ["handler.steps[1].name"]
    assert "duplicate step name 'a'" in error.violations["handler.steps[1].name"]

    for version in ("1.0", "v1.0.0", "01.0.0", "1.0.0+build", ""):
        error = await rich_error(register(server, handler(version=version)), INVALID)
        assert list(error.violations) == ["handler.version"], version


async def test_bad_retry_policy_and_timeouts(server: RunningServer) -> None:
    policy = handlers_pb2.RetryPolicy(
        max_attempts=-1,
        backoff_coefficient=0.5,
        jitter=1.5,
        initial_backoff=duration_pb2.Duration(seconds=10),
        max_backoff=duration_pb2.Duration(seconds=5),
    )
    bad = handler(
        step("a"),
        step("b", "a", retry_policy=policy, lease_timeout=duration_pb2.Duration(nanos=1000), priority=5000),
    )
    error = await rich_error(register(server, bad), INVALID)
    assert set(error.violations) == {
        f"handler.steps[1].{field}"
        for field in (
            "retry_policy.max_attempts",
            "retry_policy.backoff_coefficient",
            "retry_policy.max_backoff",
            "retry_policy.jitter",
            "lease_timeout",
            "priority",
        )
    }


async def test_nothing_is_half_registered(server: RunningServer) -> None:
    bad = handler(step("a", "b"), step("b", "a"), namespace="fresh")
    await rich_error(register(server, bad), INVALID)
    await rich_error(get(server, namespace="fresh", name="refund"), grpc.StatusCode.NOT_FOUND)
    listed = await stub(server).ListNamespaces(handlers_pb2.ListNamespacesRequest(), metadata=server.admin)
    assert list(listed.namespaces) == []


async def test_not_found_carries_resource_info(server: RunningServer) -> None:
    error = await rich_error(
        get(server, namespace="payments", name="refund", version="2.0.0"), grpc.StatusCode.NOT_FOUND
    )
    assert error.resource.resource_type == "baton.v1.Handler"
    assert error.resource.resource_name == "namespaces/payments/handlers/refund/versions/2.0.0"
    error = await rich_error(get(server, namespace="payments", name="refund"), grpc.StatusCode.NOT_FOUND)
    assert error.resource.resource_name == "namespaces/payments/handlers/refund"


async def test_get_needs_namespace_and_name(server: RunningServer) -> None:
    error = await rich_error(get(server), INVALID)
    assert set(error.violations) == {"namespace", "name"}
    error = await rich_error(get(server, namespace="payments", name="refund", version="latest"), INVALID)
    assert set(error.violations) == {"version"}


async def test_list_handlers_pages_in_semver_order(server: RunningServer) -> None:
    for version in ("2.0.0", "1.10.0", "2.0.0-rc.1", "1.9.0"):
        await register(server, handler(version=version))
    await register(server, handler(name="charge"))
    seen, token = [], ""
    while True:
        request = handlers_pb2.ListHandlersRequest(namespace="payments", page_size=2, page_token=token)
        response = await stub(server).ListHandlers(request, metadata=server.admin)
        seen += [f"{h.name}@{h.version}" for h in response.handlers]
        token = response.next_page_token
        if not token:
            break
    assert seen == ["charge@1.0.0", "refund@1.9.0", "refund@1.10.0", "refund@2.0.0-rc.1", "refund@2.0.0"]

    latest = await stub(server).ListHandlers(
        handlers_pb2.ListHandlersRequest(namespace="payments", latest_only=True), metadata=server.admin
    )
    assert [f"{h.name}@{h.version}" for h in latest.handlers] == ["charge@1.0.0", "refund@2.0.0"]
    nowhere = await stub(server).ListHandlers(
        handlers_pb2.ListHandlersRequest(namespace="nowhere"), metadata=server.admin
    )
    assert list(nowhere.handlers) == []
    assert nowhere.next_page_token == ""
    negative = handlers_pb2.ListHandlersRequest(namespace="payments", page_size=-1)
    error = await rich_error(stub(server).ListHandlers(negative, metadata=server.admin), INVALID)
    assert set(error.violations) == {"page_size"}
    first = await stub(server).ListHandlers(
        handlers_pb2.ListHandlersRequest(namespace="payments", page_size=1), metadata=server.admin
    )
    moved = handlers_pb2.ListHandlersRequest(namespace="payments", name="refund", page_token=first.next_page_token)
    error = await rich_error(stub(server).ListHandlers(moved, metadata=server.admin), INVALID)
    assert set(error.violations) == {"page_token"}


async def test_developer_is_scoped_to_its_namespace(server: RunningServer) -> None:
    developer = await create_account(server, "dev-payments", "developer@payments")
    await register(server, handler(namespace="shipping", name="label"))  # by the admin
    registered = await register(server, handler(), developer.metadata)
    assert registered.namespace == "payments"
    error = await rich_error(register(server, handler(namespace="shipping"), developer.metadata), DENIED)
    assert error.info.metadata["namespace"] == "shipping"
    await rich_error(get(server, developer.metadata, namespace="shipping", name="label"), DENIED)

    listed = await stub(server).ListNamespaces(handlers_pb2.ListNamespacesRequest(), metadata=developer.metadata)
    assert [(n.name, n.handler_count) for n in listed.namespaces] == [("payments", 1)]
    assert listed.namespaces[0].HasField("create_time")
    everything = await stub(server).ListNamespaces(handlers_pb2.ListNamespacesRequest(), metadata=server.admin)
    assert [n.name for n in everything.namespaces] == ["payments", "shipping"]


async def test_viewer_reads_but_does_not_register(server: RunningServer) -> None:
    viewer = await create_account(server, "viewer-all", "viewer")
    registered = await register(server, handler())
    assert await get(server, viewer.metadata, namespace="payments", name="refund") == registered
    listed = await stub(server).ListHandlers(
        handlers_pb2.ListHandlersRequest(namespace="payments"), metadata=viewer.metadata
    )
    assert list(listed.handlers) == [registered]
    namespaces = await stub(server).ListNamespaces(handlers_pb2.ListNamespacesRequest(), metadata=viewer.metadata)
    assert [n.name for n in namespaces.namespaces] == ["payments"]
    await rich_error(register(server, handler(version="1.0.1"), viewer.metadata), DENIED)
