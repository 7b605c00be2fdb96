"""`scs-sweep query "SQL"`: DuckDB SQL over the store's tables, each visible by its name.

Each table is a lazy pyarrow dataset registered with DuckDB, so a statement scans the Parquet files in
place and reads only the columns (and, with a filter on `experiment`, only the files) it uses: a query
over `trials` never touches the per-epoch p lists of `layers`. Works the same for local stores and
object-store URIs (pyarrow does the I/O). DuckDB speaks full SQL, including `GROUP BY ALL`.
"""
from __future__ import annotations

import json

import pyarrow as pa

from common.errors import first_line

from .schema import TABLES
from .store import ParquetStore, Snapshot, StoreError

__all__ = ["connect", "run_query", "format_table"]


def connect(store: ParquetStore, snapshot: Snapshot | None = None):
    """A DuckDB connection with every table registered (the files of `snapshot`, else of now)."""
    import duckdb

    snapshot = snapshot or store.snapshot()
    con = duckdb.connect()
    for table in TABLES:
        con.register(table, snapshot.dataset(table))
    return con


def run_query(store: ParquetStore, sql: str) -> pa.Table:
    """The statement's rows; run again if a compaction committed while it read (store.read)."""
    import duckdb

    def query(snapshot: Snapshot) -> pa.Table:
        try:
            relation = connect(store, snapshot).sql(sql)
            if relation is None:  # a statement that returns no relation (SET ..., CREATE ...)
                raise StoreError("bad query: the statement returns no rows; give a SELECT")
            return relation.to_arrow_table()
        except duckdb.Error as exc:
            first = first_line(exc)
            if isinstance(exc, duckdb.IOException) or "reading the stream registered as" in first:
                raise OSError(first) from None  # e.g. a file a compaction deleted meanwhile: store.read reads again
            raise StoreError(f"bad query: {first}") from None

    return store.read(query)


def format_table(table: pa.Table, fmt: str) -> str:
    df = table.to_pandas()
    if fmt == "csv":
        return df.to_csv(index=False).rstrip("\n")
    if fmt == "json":
        return json.dumps(df.to_dict(orient="records"), default=str, indent=1)
    return df.to_string(index=False) if len(df) else "(no rows)"
