"""Alembic migrations of the Baton schema, run programmatically by baton.store.migrate (no alembic.ini).

A new revision: `alembic.command.revision(alembic_config(), "what changes", rev_id="0002_what")` with
baton.store.migrate.alembic_config, then write its upgrade and downgrade by hand with op.* calls that mirror
baton.store.tables; the contract suite fails until the migrated schema and the metadata agree, on both
backends.
"""

#: The newest revision; baton.store.migrate checks it without loading Alembic. A test keeps it equal to
#: Alembic's head, so adding a migration means updating it.
HEAD_REVISION = "0002_checks_without_in_lists"
