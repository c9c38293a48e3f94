"""The policy table read from the contract's method options."""

from __future__ import annotations

import contextlib

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.descriptor import FileDescriptor

from baton.server.policy import API_FILES, CallKind, Idempotency, PolicyError, load_policies
from baton.v1 import options_pb2


def test_every_method_of_every_service_has_a_valid_policy() -> None:
    table = load_policies()
    methods = [
        f"/{service.full_name}/{method.name}"
        for file in API_FILES
        for service in file.services_by_name.values()
        for method in service.methods
    ]
    assert methods, "no services found in the contract"
    assert sorted(table) == sorted(methods)
    for policy in table.values():
        assert policy.rate_cost >= 1
        assert policy.default_deadline_seconds > 0
        assert policy.public or policy.permission or policy.method == "WhoAmI"


def test_known_policies() -> None:
    table = load_policies()
    create = table["/baton.v1.TaskService/CreateTask"]
    assert create.permission == "tasks.create"
    assert create.idempotency is Idempotency.IDEMPOTENT
    assert create.namespace_field == "namespace"
    assert table["/baton.v1.TaskService/WatchTask"].kind is CallKind.SERVER_STREAM
    assert table["/baton.v1.TaskService/GetTask"].idempotency is Idempotency.NO_SIDE_EFFECTS
    assert table["/baton.v1.AuthService/Login"].public
    assert table["/baton.v1.HandlerService/RegisterHandler"].namespace_field == "handler.namespace"


def _file_with(method_options: str) -> FileDescriptor:
    """Build a throwaway service whose one method has the given policy text (or none)."""
    from google.protobuf import text_format

    pool = descriptor_pool.DescriptorPool()
    for dep in (descriptor_pb2.DESCRIPTOR, options_pb2.DESCRIPTOR):
        for name in [*(d.name for d in dep.dependencies), dep.name]:
            proto = descriptor_pb2.FileDescriptorProto()
            descriptor_pool.Default().FindFileByName(name).CopyToProto(proto)
            with contextlib.suppress(TypeError):
                pool.Add(proto)
    file = descriptor_pb2.FileDescriptorProto(
        name="probe.proto", package="probe", dependency=["baton/v1/options.proto"], syntax="proto3"
    )
    file.message_type.add(name="Req")
    service = file.service.add(name="ProbeService")
    method = service.method.add(name="Do", input_type=".probe.Req", output_type=".probe.Req")
    if method_options:
        options = descriptor_pb2.MethodOptions()
        policy = options_pb2.MethodPolicy()
        text_format.Parse(method_options, policy)
        options.Extensions[options_pb2.policy].CopyFrom(policy)
        method.options.CopyFrom(options)
    pool.Add(file)
    return pool.FindFileByName("probe.proto")


def test_a_method_without_policy_stops_start_up() -> None:
    with pytest.raises(PolicyError, match=r"has no \(baton\.v1\.policy\) option"):
        load_policies((_file_with(""),))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('permission: "x" default_deadline {seconds: 1}', "rate_cost must be at least 1"),
        ('permission: "x" rate_cost: 1', "default_deadline must be positive"),
        ('public: true permission: "x" rate_cost: 1 default_deadline {seconds: 1}', "names no permission"),
        ('permission: "x" rate_cost: 1 default_deadline {seconds: 1} namespace_field: "nope"', "not a field"),
    ],
)
def test_invalid_policies_stop_start_up(text: str, message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        load_policies((_file_with(text),))
