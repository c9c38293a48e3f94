"""Storage errors: each one a single line naming the database URL with its password hidden."""

from __future__ import annotations


class StorageError(Exception):
    """Base of every storage error; `url` is the database URL with the password hidden."""

    def __init__(self, url: str, message: str) -> None:
        super().__init__(message)
        self.url = url


class StorageUnavailable(StorageError):
    """The database cannot be opened or reached."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(url, f"database {url} is unavailable: {reason}")
        self.reason = reason


class DatabaseTooNew(StorageError):
    """The database was migrated by a newer Baton: its revision is unknown to this code."""

    def __init__(self, url: str, revision: str, head: str) -> None:
        super().__init__(
            url,
            f"database {url} is at revision {revision}, unknown to this Baton (its newest is {head}); "
            "run a newer Baton, or downgrade the database with the Baton that migrated it",
        )
        self.revision = revision
        self.head = head


class MigrationsPending(StorageError):
    """The database is behind this code and automatic migration is off."""

    def __init__(self, url: str, current: str | None, head: str, pending: list[str]) -> None:
        super().__init__(
            url,
            f"database {url} is at revision {current or 'base (empty)'} and needs migrations "
            f"{', '.join(pending)} to reach {head}; run `baton migrate up` or set BATON_AUTO_MIGRATE=true",
        )
        self.current = current
        self.head = head
        self.pending = pending
