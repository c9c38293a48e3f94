"""The handler registry on every backend: immutable versions, SemVer order, pages, races, atomicity, the cache."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from baton.config import EngineConfig
from baton.domain.backoff import RetryPolicy
from baton.domain.handlers import HandlerDefinition, StepDefinition
from baton.engine import handler_sql
from baton.engine import handlers as registry_module
from baton.engine.handlers import HandlerRegistry, RegisteredHandler
from baton.errors import AlreadyExists, InvalidArgument, NotFound
from baton.store import SqlStore, tables

STEPS = (
    StepDefinition("charge", "billing.charge"),
    StepDefinition(
        "email",
        "billing.email",
        depends_on=("charge",),
        retry_policy=RetryPolicy(max_attempts=5, jitter=0.5, non_retryable_error_types=frozenset({"Bounce"})),
        lease_timeout=30.0,
        priority=7,
        description="tell the customer",
    ),
)


def definition(
    version: str = "1.0.0", *, name: str = "invoice", namespace: str = "billing", steps: Any = STEPS
) -> HandlerDefinition:
    return HandlerDefinition(namespace, name, version, tuple(steps), description=f"{name} {version}")


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def registry(store: SqlStore) -> HandlerRegistry:
    return HandlerRegistry.from_config(store, EngineConfig())


async def count(store: SqlStore, table: Any) -> int:
    return await store.run_in_transaction(lambda c: int(c.execute(select(func.count()).select_from(table)).scalar()))


def versions(page: list[RegisteredHandler]) -> list[str]:
    return [f"{h.definition.name}@{h.definition.version}" for h in page]


async def test_register_then_get_resolves_unset_fields(registry: HandlerRegistry) -> None:
    registered = await registry.register(definition())
    charge, email = registered.definition.steps
    assert charge.retry_policy == RetryPolicy(3, 1.0, 2.0, 300.0, 0.0, frozenset())
    assert charge.lease_timeout == 300.0
    assert email.retry_policy == RetryPolicy(5, 1.0, 2.0, 300.0, 0.5, frozenset({"Bounce"}))
    assert (email.lease_timeout, email.priority, email.depends_on) == (30.0, 7, ("charge",))
    assert len(registered.definition_digest) == 64

    registry.cache = registry_module.HandlerCache(10, 5.0, Clock())  # read from the store, not the cache
    stored = await registry.get("billing", "invoice", "1.0.0")
    assert stored == registered
    assert await registry.get("billing", "invoice") == registered


async def test_same_definition_again_is_a_no_op(store: SqlStore, registry: HandlerRegistry) -> None:
    first = await registry.register(definition())
    other_replica = HandlerRegistry.from_config(store, EngineConfig())
    again = await other_replica.register(definition())
    assert again == first  # the original create_time
    # Spelling out the server defaults is the same effective definition.
    explicit = (StepDefinition("charge", "billing.charge", retry_policy=RetryPolicy(3, 1.0, 2.0), lease_timeout=300),)
    implicit = await registry.register(definition("1.1.0", steps=STEPS[:1]))
    assert await registry.register(definition("1.1.0", steps=explicit)) == implicit
    assert await count(store, tables.handlers) == 2
    assert await count(store, tables.handler_steps) == 3
    assert await count(store, tables.namespaces) == 1


async def test_different_definition_under_a_version_is_already_exists(registry: HandlerRegistry) -> None:
    await registry.register(definition())
    changed = (STEPS[0], StepDefinition("email", "billing.email", depends_on=("charge",), priority=8))
    with pytest.raises(AlreadyExists) as caught:
        await registry.register(definition(steps=changed))
    assert caught.value.reason == "HANDLER_VERSION_EXISTS"
    assert caught.value.metadata == {"namespace": "billing", "name": "invoice", "version": "1.0.0"}


async def test_missing_versions_are_not_found(registry: HandlerRegistry) -> None:
    with pytest.raises(NotFound) as caught:
        await registry.get("billing", "invoice", "1.0.0")
    assert caught.value.resource is not None
    assert caught.value.resource.resource_type == "baton.v1.Handler"
    assert caught.value.resource.resource_name == "namespaces/billing/handlers/invoice/versions/1.0.0"
    await registry.register(definition())
    with pytest.raises(NotFound):
        await registry.get("billing", "invoice", "1.0.1")
    with pytest.raises(NotFound):
        await registry.get("billing", "receipt")
    with pytest.raises(NotFound):
        await registry.get("shipping", "invoice", "1.0.0")


async def test_latest_follows_semver_precedence(registry: HandlerRegistry) -> None:
    for version in ("1.10.0", "1.9.0", "2.0.0-rc.1"):
        await registry.register(definition(version))
    assert (await registry.get("billing", "invoice")).definition.version == "2.0.0-rc.1"
    await registry.register(definition("2.0.0"))  # drops the cached latest at once
    assert (await registry.get("billing", "invoice")).definition.version == "2.0.0"
    await registry.register(definition("2.0.0-rc.2"))
    assert (await registry.get("billing", "invoice")).definition.version == "2.0.0"

    page, token = await registry.list_handlers("billing")
    assert versions(page) == [f"invoice@{v}" for v in ("1.9.0", "1.10.0", "2.0.0-rc.1", "2.0.0-rc.2", "2.0.0")]
    assert token == ""


ORDERED = [
    "alpha@0.1.0",
    "alpha@1.0.0",
    "beta@1.0.0-2",
    "beta@1.0.0-10",
    "beta@1.0.0-alpha",
    "beta@1.0.0-alpha.1",
    "beta@1.0.0-beta",
    "beta@1.0.0",
    "beta@1.2.0",
    "gamma@3.0.0",
]


async def register_all(registry: HandlerRegistry, specs: list[str], namespace: str = "billing") -> None:
    for spec in reversed(specs):
        name, _, version = spec.partition("@")
        await registry.register(definition(version, name=name, namespace=namespace))


async def all_pages(registry: HandlerRegistry, size: int, **options: Any) -> list[str]:
    seen: list[str] = []
    token = ""
    for _ in range(100):
        page, token = await registry.list_handlers("billing", page_size=size, page_token=token, **options)
        assert len(page) <= size
        seen += versions(page)
        if not token:
            return seen
    raise AssertionError("pagination does not end")


async def test_list_pages_in_name_then_semver_order(registry: HandlerRegistry) -> None:
    await register_all(registry, ORDERED)
    await register_all(registry, ["zeta@1.0.0"], namespace="shipping")
    for size in (1, 2, 3, 4, 7, 1000):
        assert await all_pages(registry, size) == ORDERED, size
    assert await all_pages(registry, 2, name="beta") == [s for s in ORDERED if s.startswith("beta@")]
    latest = ["alpha@1.0.0", "beta@1.2.0", "gamma@3.0.0"]
    for size in (1, 2, 50):
        assert await all_pages(registry, size, latest_only=True) == latest
    assert await all_pages(registry, 1, latest_only=True, name="beta") == ["beta@1.2.0"]
    assert await registry.list_handlers("nowhere") == ([], "")


async def test_list_tokens_are_bound_to_the_request(registry: HandlerRegistry) -> None:
    await register_all(registry, ORDERED)
    _, token = await registry.list_handlers("billing", page_size=2)
    for options in ({"name": "beta"}, {"latest_only": True}):
        with pytest.raises(InvalidArgument) as caught:
            await registry.list_handlers("billing", page_size=2, page_token=token, **options)
        assert [v.field for v in caught.value.field_violations] == ["page_token"]
    with pytest.raises(InvalidArgument):
        await registry.list_handlers("shipping", page_token=token)
    with pytest.raises(InvalidArgument):
        await registry.list_handlers("billing", page_token="not-a-token")
    with pytest.raises(InvalidArgument) as caught:
        await registry.list_handlers("billing", page_size=-1)
    assert [v.field for v in caught.value.field_violations] == ["page_size"]


async def test_list_namespaces(registry: HandlerRegistry) -> None:
    for namespace, count_ in (("payments", 2), ("billing", 3), ("shipping", 1)):
        for patch in range(count_):
            await registry.register(definition(f"1.0.{patch}", namespace=namespace))
    page, token = await registry.list_namespaces(readable=None)
    assert [(n.name, n.handler_count) for n in page] == [("billing", 3), ("payments", 2), ("shipping", 1)]
    assert token == ""
    assert all(n.create_time.tzinfo is not None for n in page)

    seen, token = [], ""
    while True:
        page, token = await registry.list_namespaces(readable=None, page_size=1, page_token=token)
        seen += [n.name for n in page]
        if not token:
            break
    assert seen == ["billing", "payments", "shipping"]

    page, _ = await registry.list_namespaces(readable=frozenset({"shipping", "payments", "elsewhere"}))
    assert [n.name for n in page] == ["payments", "shipping"]
    assert await registry.list_namespaces(readable=frozenset()) == ([], "")


async def test_concurrent_identical_registrations_both_succeed(store: SqlStore) -> None:
    replicas = [HandlerRegistry.from_config(store, EngineConfig()) for _ in range(4)]
    results = await asyncio.gather(*(replica.register(definition()) for replica in replicas))
    assert len({(r.create_time, r.definition_digest) for r in results}) == 1
    assert await count(store, tables.handlers) == 1
    assert await count(store, tables.handler_steps) == 2


async def test_losing_a_registration_race_returns_the_winner(
    store: SqlStore, registry: HandlerRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    winner = await HandlerRegistry.from_config(store, EngineConfig()).register(definition())
    # The loser's transaction does not see the winner's row (as when both start together) and hits the constraint.
    monkeypatch.setattr(handler_sql, "get_version", lambda *args: None)
    assert await registry.register(definition()) == winner
    changed = (STEPS[0], StepDefinition("email", "billing.email", depends_on=("charge",), priority=8))
    with pytest.raises(AlreadyExists):
        await registry.register(definition(steps=changed))
    assert await count(store, tables.handlers) == 1


async def test_failed_registration_leaves_nothing(
    store: SqlStore, registry: HandlerRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    cyclic = (StepDefinition("a", "s", depends_on=("b",)), StepDefinition("b", "s", depends_on=("a",)))
    with pytest.raises(InvalidArgument, match=r"cycle: a -> b -> a"):
        await registry.register(definition(steps=cyclic))
    # A failure inside the transaction (here: step rows breaking their primary key) rolls everything back.
    monkeypatch.setattr(registry_module, "validate_handler", lambda *args: [])
    duplicate = (StepDefinition("a", "s"), StepDefinition("a", "s"))
    with pytest.raises(IntegrityError):
        await registry.register(definition(steps=duplicate))
    for table in (tables.namespaces, tables.handlers, tables.handler_steps):
        assert await count(store, table) == 0, table.name


async def test_latest_from_another_replica_shows_within_the_ttl(store: SqlStore) -> None:
    clock = Clock()
    here = HandlerRegistry.from_config(store, EngineConfig())
    here.cache = registry_module.HandlerCache(10_000, 5.0, clock)
    elsewhere = HandlerRegistry.from_config(store, EngineConfig())
    await here.register(definition("1.0.0"))
    assert (await here.get("billing", "invoice")).definition.version == "1.0.0"
    await elsewhere.register(definition("1.1.0"))
    assert (await here.get("billing", "invoice")).definition.version == "1.0.0"  # cached
    assert (await here.get("billing", "invoice", "1.1.0")).definition.version == "1.1.0"  # versions: never stale
    clock.now += 5.0
    assert (await here.get("billing", "invoice")).definition.version == "1.1.0"


async def test_cache_is_bounded(store: SqlStore, registry: HandlerRegistry) -> None:
    registry.cache = registry_module.HandlerCache(3, 5.0, Clock())
    for version in itertools.islice((f"1.0.{n}" for n in itertools.count()), 6):
        await registry.register(definition(version))
        await registry.get("billing", "invoice")
    assert len(registry.cache) == 3
    assert (await registry.get("billing", "invoice", "1.0.0")).definition.version == "1.0.0"
