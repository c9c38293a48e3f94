"""Alembic environment: runs the migrations on the connection that baton.store.migrate hands over.

migrate.py opens a transaction on the async engine and calls Alembic inside `AsyncConnection.run_sync`,
putting the synchronous connection in `config.attributes["connection"]`; Alembic joins that transaction, so
migrations apply completely or not at all (SQLite DDL included, see engine.py).
"""

from __future__ import annotations

from alembic import context

from baton.store.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("Baton migrations run through baton.store.migrate (`baton migrate up`), not the alembic CLI")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
