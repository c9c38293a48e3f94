"""A client built only from server reflection, the way grpcurl, grpcui and Postman work: no generated code.

Everything this file knows about Baton's API comes over the wire: grpc_reflection's
ProtoReflectionDescriptorDatabase (reflection v1alpha) feeds a fresh google.protobuf DescriptorPool, message classes
come from message_factory, and requests and responses are JSON through json_format. Nothing from `baton` (and no
generated `_pb2` module of Baton) is imported here. Reflection v1, which newer grpcurl asks first, is then spoken with
message classes built from the v1 descriptors that reflection itself served.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
from google.protobuf.descriptor import MethodDescriptor
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from tests.e2e.conftest import BatonProcess

TIMEOUT = 10.0


class ReflectionClient:
    """Lists services, describes methods and calls unary RPCs with JSON, knowing only what reflection says."""

    def __init__(self, channel: grpc.Channel) -> None:
        self.channel = channel
        self.database = ProtoReflectionDescriptorDatabase(channel)
        self.pool = descriptor_pool.DescriptorPool(self.database)

    def services(self) -> list[str]:
        return sorted(self.database.get_services())

    def method(self, full_name: str) -> MethodDescriptor:
        """`package.Service/Method` (grpcurl's spelling) or `package.Service.Method`."""
        service, _, name = full_name.replace("/", ".").rpartition(".")
        return self.pool.FindServiceByName(service).methods_by_name[name]

    def message_class(self, full_name: str) -> type[Any]:
        return message_factory.GetMessageClass(self.pool.FindMessageTypeByName(full_name))

    def describe(self, full_name: str) -> dict[str, Any]:
        """What `grpcurl describe` shows of a method, with its options decoded (custom ones included)."""
        method = self.method(full_name)
        options_class = self.message_class("google.protobuf.MethodOptions")
        options = options_class.FromString(method.GetOptions().SerializeToString())
        policy_extension = self.pool.FindExtensionByName("baton.v1.policy")
        return {
            "service": method.containing_service.full_name,
            "file": method.containing_service.file.name,
            "input": method.input_type.full_name,
            "output": method.output_type.full_name,
            "client_streaming": method.client_streaming,
            "server_streaming": method.server_streaming,
            "idempotency_level": options_class.IdempotencyLevel.Name(options.idempotency_level),
            "policy": json_format.MessageToDict(options.Extensions[policy_extension], preserving_proto_field_name=True),
            "input_fields": [field.name for field in method.input_type.fields],
        }

    def call(self, full_name: str, body: str, metadata: tuple[tuple[str, str], ...] = ()) -> dict[str, Any]:
        """A unary call with a JSON request body; the response as JSON (proto field names, as grpcurl prints)."""
        method = self.method(full_name)
        request_class = message_factory.GetMessageClass(method.input_type)
        response_class = message_factory.GetMessageClass(method.output_type)
        request = json_format.Parse(body, request_class(), descriptor_pool=self.pool)
        stub = self.channel.unary_unary(
            f"/{method.containing_service.full_name}/{method.name}",
            request_serializer=request_class.SerializeToString,
            response_deserializer=response_class.FromString,
        )
        response = stub(request, metadata=metadata, timeout=TIMEOUT)
        text = json_format.MessageToJson(response, descriptor_pool=self.pool, preserving_proto_field_name=True)
        return dict(json.loads(text))


@pytest.fixture
def client(baton: BatonProcess) -> Iterator[ReflectionClient]:
    with grpc.insecure_channel(baton.target) as channel:
        yield ReflectionClient(channel)


def test_lists_every_service_without_credentials(client: ReflectionClient) -> None:
    services = client.services()
    assert services == [
        "baton.v1.AdminService",
        "baton.v1.AuthService",
        "baton.v1.HandlerService",
        "baton.v1.TaskService",
        "baton.v1.UserService",
        "baton.v1.WorkerService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    ]
    # Every listed service resolves to a file with its methods (its imports resolve too).
    for name in services:
        assert client.pool.FindServiceByName(name).methods, name
    assert {m.name for m in client.pool.FindServiceByName("baton.v1.TaskService").methods} >= {
        "CreateTask",
        "GetTask",
        "ListTasks",
        "CancelTask",
        "WatchTask",
    }


def test_describes_a_method_with_its_policy(client: ReflectionClient) -> None:
    create = client.describe("baton.v1.TaskService/CreateTask")
    assert create == {
        "service": "baton.v1.TaskService",
        "file": "baton/v1/tasks.proto",
        "input": "baton.v1.CreateTaskRequest",
        "output": "baton.v1.Task",
        "client_streaming": False,
        "server_streaming": False,
        "idempotency_level": "IDEMPOTENT",
        "policy": {
            "permission": "tasks.create",
            "rate_cost": 1,
            "default_deadline": "10s",
            "namespace_field": "namespace",
        },
        "input_fields": [
            "namespace",
            "handler_name",
            "handler_version",
            "context",
            "tags",
            "priority",
            "correlation_id",
            "request_id",
        ],
    }
    watch = client.describe("baton.v1.TaskService.WatchTask")
    assert watch["server_streaming"] is True
    assert watch["idempotency_level"] == "NO_SIDE_EFFECTS"
    assert client.describe("baton.v1.AuthService/Login")["policy"].get("public") is True


def test_json_calls_drive_a_task(client: ReflectionClient, baton: BatonProcess) -> None:
    key = (("x-api-key", baton.api_key),)
    handler = client.call(
        "baton.v1.HandlerService/RegisterHandler",
        json.dumps(
            {
                "handler": {
                    "namespace": "reflect",
                    "name": "pipeline",
                    "version": "1.0.0",
                    "steps": [
                        {"name": "a", "step_handler": "reflect.a"},
                        {
                            "name": "b",
                            "step_handler": "reflect.b",
                            "depends_on": ["a"],
                            "retry_policy": {"max_attempts": 5, "initial_backoff": "1.5s", "jitter": 1},
                        },
                    ],
                }
            }
        ),
        key,
    )
    assert [step["name"] for step in handler["steps"]] == ["a", "b"]
    assert handler["steps"][1]["retry_policy"]["initial_backoff"] == "1.500s"
    assert handler["steps"][1]["retry_policy"]["max_attempts"] == 5

    task = client.call(
        "baton.v1.TaskService/CreateTask",
        '{"namespace": "reflect", "handler_name": "pipeline", "context": {"order_id": 42, "rush": true},'
        ' "tags": ["web"], "request_id": "reflect-1"}',
        key,
    )
    assert task["state"] == "TASK_STATE_PENDING"
    assert task["context"] == {"order_id": 42, "rush": True}
    assert {step["name"]: step["state"] for step in task["steps"]} == {
        "a": "STEP_STATE_READY",
        "b": "STEP_STATE_PENDING",
    }

    for expected in ("a", "b"):
        poll = client.call(
            "baton.v1.WorkerService/PollSteps",
            '{"namespace": "reflect", "step_handlers": ["reflect.a", "reflect.b"], "worker_id": "json-worker",'
            ' "max_steps": 1, "max_wait": "5s"}',
            key,
        )
        (lease,) = poll["leases"]
        assert lease["step_name"] == expected
        done = client.call(
            "baton.v1.WorkerService/CompleteStep",
            json.dumps(
                {
                    "worker_id": "json-worker",
                    "completions": [
                        {
                            "lease": {"step_id": lease["step_id"], "fencing_token": lease["fencing_token"]},
                            "result": {"by": "json", "step": expected},
                        }
                    ],
                }
            ),
            key,
        )
        assert done["outcomes"][0]["step_state"] == "STEP_STATE_COMPLETED"

    got = client.call("baton.v1.TaskService/GetTask", json.dumps({"id": task["id"]}), key)
    assert got["state"] == "TASK_STATE_COMPLETED"
    assert {step["name"]: step["result"] for step in got["steps"]} == {
        "a": {"by": "json", "step": "a"},
        "b": {"by": "json", "step": "b"},
    }
    masked = client.call("baton.v1.TaskService/GetTask", json.dumps({"id": task["id"], "read_mask": "id,state"}), key)
    assert masked == {"id": task["id"], "state": "TASK_STATE_COMPLETED"}


def test_errors_keep_their_codes(client: ReflectionClient, baton: BatonProcess) -> None:
    with pytest.raises(grpc.RpcError) as missing:
        client.call("baton.v1.TaskService/GetTask", '{"id": "no-such-task"}', (("x-api-key", baton.api_key),))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    assert "no-such-task" in (missing.value.details() or "")
    trailers = dict(missing.value.trailing_metadata() or ())
    assert trailers.get("grpc-status-details-bin")

    with pytest.raises(grpc.RpcError) as anonymous:
        client.call("baton.v1.AuthService/WhoAmI", "{}")
    assert anonymous.value.code() == grpc.StatusCode.UNAUTHENTICATED

    with pytest.raises(json_format.ParseError):
        client.call("baton.v1.TaskService/GetTask", '{"no_such_field": 1}')


def test_reflection_v1_answers(client: ReflectionClient) -> None:
    """Reflection v1, spoken with the message classes reflection served for it."""
    service = client.pool.FindServiceByName("grpc.reflection.v1.ServerReflection")
    method = service.methods_by_name["ServerReflectionInfo"]
    assert method.client_streaming
    assert method.server_streaming
    request_class = message_factory.GetMessageClass(method.input_type)
    response_class = message_factory.GetMessageClass(method.output_type)
    info = client.channel.stream_stream(
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        request_serializer=request_class.SerializeToString,
        response_deserializer=response_class.FromString,
    )
    requests = [
        request_class(list_services="*"),
        request_class(file_containing_symbol="baton.v1.TaskService"),
        request_class(file_by_filename="baton/v1/options.proto"),
        request_class(file_containing_symbol="baton.v1.NoSuchThing"),
    ]
    responses = list(info(iter(requests), timeout=TIMEOUT))
    assert len(responses) == 4

    listed = {entry.name for entry in responses[0].list_services_response.service}
    assert {"baton.v1.TaskService", "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection"} <= listed

    files = [
        descriptor_pb2.FileDescriptorProto.FromString(raw)
        for raw in responses[1].file_descriptor_response.file_descriptor_proto
    ]
    assert files[0].name == "baton/v1/tasks.proto"
    assert "TaskService" in [s.name for s in files[0].service]

    options_files = [
        descriptor_pb2.FileDescriptorProto.FromString(raw)
        for raw in responses[2].file_descriptor_response.file_descriptor_proto
    ]
    assert options_files[0].name == "baton/v1/options.proto"

    assert responses[3].WhichOneof("message_response") == "error_response"
    assert responses[3].error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0]
