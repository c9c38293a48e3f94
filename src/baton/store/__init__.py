"""Storage: the schema, its migrations and the store over SQLite (aiosqlite) or PostgreSQL (asyncpg)."""

from baton.store import migrate, tables
from baton.store.engine import create_engine, redacted_url
from baton.store.errors import DatabaseTooNew, MigrationsPending, StorageError, StorageUnavailable
from baton.store.ids import id_time, new_id, uuid7
from baton.store.migrate import MigrationStatus, ensure_current
from baton.store.store import SqlStore, Store, open_store

__all__ = [
    "DatabaseTooNew",
    "MigrationStatus",
    "MigrationsPending",
    "SqlStore",
    "StorageError",
    "StorageUnavailable",
    "Store",
    "create_engine",
    "ensure_current",
    "id_time",
    "migrate",
    "new_id",
    "open_store",
    "redacted_url",
    "tables",
    "uuid7",
]
