"""Storage-level errors. They know nothing of HTTP; the actors and the api translate them."""

from __future__ import annotations


class StorageError(Exception):
    pass


class RowNotFound(StorageError):
    pass


class UniqueViolation(StorageError):
    """A unique constraint failed; ``constraint`` names it so callers can tell which."""

    def __init__(self, constraint: str) -> None:
        super().__init__(constraint)
        self.constraint = constraint
