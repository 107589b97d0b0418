"""The store: the one source of truth for every resource the service shows."""

from .backend import Backend, MemoryBackend, SqliteBackend
from .store import Change, Entry, Store, StoreError, Transaction, deep_copy

__all__ = [
    "Backend",
    "Change",
    "Entry",
    "MemoryBackend",
    "SqliteBackend",
    "Store",
    "StoreError",
    "Transaction",
    "deep_copy",
]
