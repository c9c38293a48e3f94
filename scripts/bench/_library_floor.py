"""Imports the libraries `baton serve` stands on (the ones the brief prescribes) and exits: no Baton code at all.

scripts/bench/startup times this process as the floor under Baton's start-up: whatever Baton does, it cannot
reach SERVING sooner than its libraries load.
"""

from __future__ import annotations

import importlib
import sys

LIBRARIES = (
    "asyncio",
    "sqlite3",
    "grpc",
    "grpc_health.v1.health_pb2_grpc",
    "grpc_reflection.v1alpha.reflection",
    "grpc_status.rpc_status",
    "pydantic_settings",
    "sqlalchemy",
    "sqlalchemy.dialects.sqlite",
    "sqlalchemy.dialects.postgresql",  # the schema's PostgreSQL-only index options load it
    "prometheus_client",
)

# structlog loads without rich, as baton/observability/logging.py loads it.
sys.modules["rich"] = None  # type: ignore[assignment]
importlib.import_module("structlog")
del sys.modules["rich"]
for name in LIBRARIES:
    importlib.import_module(name)
