"""The Parquet store and everything read from it: queries, the paper's tables, claims, figures, the report.
May import search_spaces (the claims are data) and trainables' plain modules only: no torch, no ray."""
from .schema import KEYS, SCHEMA_VERSION, TABLES
from .store import ParquetStore, StoreError, get_store

__all__ = ["KEYS", "SCHEMA_VERSION", "TABLES", "ParquetStore", "StoreError", "get_store"]
