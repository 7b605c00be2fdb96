"""The Parquet results store: schema, writer, gather, query; the paper's tables; figures."""
from .schema import KEYS, SCHEMA_VERSION, TABLES
from .store import ParquetStore, StoreError, get_store

__all__ = ["KEYS", "SCHEMA_VERSION", "TABLES", "ParquetStore", "StoreError", "get_store"]
