"""The store: the one source of truth for every resource the service shows."""

from .backend import Backend, MemoryBackend, SqliteBackend
from .group import GroupCommit
from .store import Change, Entry, Store, StoreError, Transaction, deep_copy

__all__ = [
    "Backend",
    "Change",
    "Entry",
    "GroupCommit",
    "MemoryBackend",
    "SqliteBackend",
    "Store",
    "StoreError",
    "Transaction",
    "deep_copy",
]
