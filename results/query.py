"""`scs-sweep query "SQL"`: DuckDB SQL over the store's tables, each visible by its name.

DuckDB reads the Parquet files in place (no copy, no server) and speaks full SQL, including
`GROUP BY ALL`; every table of the store is a view named after it (trials, epochs, layers, ...).
"""
from __future__ import annotations

import json

import pyarrow as pa

from .schema import TABLES
from .store import ParquetStore, StoreError


def connect(store: ParquetStore):
    import duckdb

    store.require()
    con = duckdb.connect()
    for table in TABLES:
        arrow = store.read_table(table)   # through pyarrow: works for local paths and object-store URIs
        con.register(f"_{table}_arrow", arrow)
        con.execute(f'CREATE VIEW "{table}" AS SELECT * FROM _{table}_arrow')
    return con


def run_query(store: ParquetStore, sql: str) -> pa.Table:
    import duckdb

    con = connect(store)
    try:
        return con.sql(sql).to_arrow_table()
    except duckdb.Error as exc:
        first = str(exc).strip().splitlines()[0]
        raise StoreError(f"bad query: {first}") from None


def format_table(table: pa.Table, fmt: str) -> str:
    df = table.to_pandas()
    if fmt == "csv":
        return df.to_csv(index=False).rstrip("\n")
    if fmt == "json":
        return json.dumps(df.to_dict(orient="records"), default=str, indent=1)
    return df.to_string(index=False) if len(df) else "(no rows)"
