"""A bare grpc.aio server answering AuthService.WhoAmI with a fixed principal: the baseline of bench/chain.

With `--echo-request-id` it also does the one thing issue #3 prescribes mechanically for every call: echo the
request ID in the response's initial metadata. grpc.aio sends initial metadata given by a handler as a batch of
its own (a unary response can carry only empty initial metadata with it), so this alone costs a round through
the completion queue per call; its throughput is the ceiling of any chain that echoes request IDs.

With `--uvloop` it runs on uvloop's event loop, as `baton serve` does by default (BATON_EVENT_LOOP=auto), so that
Baton's chain can also be set against a bare server on the same loop.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import Any

import grpc

from baton.v1 import auth_pb2, auth_pb2_grpc, common_pb2, users_pb2

RESPONSE = auth_pb2.WhoAmIResponse(
    user=users_pb2.User(
        id="0190f5c4-0000-7000-8000-000000000000",
        username="admin",
        display_name="Bootstrap admin",
        kind=users_pb2.USER_KIND_SERVICE_ACCOUNT,
        role_bindings=[users_pb2.RoleBinding(role=common_pb2.ROLE_ADMIN)],
    ),
    auth_method="api_key",
    permissions=["audit.read", "handlers.read", "handlers.write", "status.read", "tasks.read"],
)


class Bare(auth_pb2_grpc.AuthServiceServicer):
    async def WhoAmI(self, request: auth_pb2.WhoAmIRequest, context: Any) -> auth_pb2.WhoAmIResponse:
        return RESPONSE


class EchoRequestId(auth_pb2_grpc.AuthServiceServicer):
    async def WhoAmI(self, request: auth_pb2.WhoAmIRequest, context: Any) -> auth_pb2.WhoAmIResponse:
        await context.send_initial_metadata(ECHOED)
        return RESPONSE


ECHOED = (("x-request-id", "0190f5c4-0000-7000-8000-000000000001"),)


async def main(port: int, echo: bool) -> None:
    server = grpc.aio.server()
    auth_pb2_grpc.add_AuthServiceServicer_to_server(EchoRequestId() if echo else Bare(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print("ready", flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await server.stop(0)


if __name__ == "__main__":
    flags = sys.argv[2:]
    if "--uvloop" in flags:
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(main(int(sys.argv[1]), "--echo-request-id" in flags))
    else:
        asyncio.run(main(int(sys.argv[1]), "--echo-request-id" in flags))
