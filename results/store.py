"""The Parquet store: one Hive-style dataset per table, written atomically, one file per trial.

Layout (a contract: other readers rely on it)::

    STORE/_schema.json                                   {"schema_version": N}
    STORE/<table>/experiment=<name>/<trial_id>.parquet   every row of one trial in one table
    STORE/_sweeps/<name>.toml                            the sweep file each experiment ran

Contract:
- A trial's file is always rewritten whole (written aside as a dot-file, then renamed), so a reader
  never sees half a file, and rewriting after a kill/resume/gather leaves each key exactly once.
- Dot- and underscore-prefixed files are invisible to pyarrow, pandas and DuckDB's hive readers.
- Rows carry every key column except `experiment`, which is the Hive partition.
- The store may be a local path or a URI pyarrow understands (s3://, gs://, file://); many sweeps
  (experiments) share one store.
"""
from __future__ import annotations

import json
import os
import re
import uuid
from pathlib import PurePosixPath

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from trainables.defaults import store as default_store
from trainables.errors import ScsSweepError

from .schema import SCHEMA_VERSION, TABLES, table_schema

__all__ = ["ParquetStore", "StoreError", "get_store", "check_name"]


class StoreError(ScsSweepError):
    """A store that cannot be used as asked; the message names it and what to do."""


_SAFE = re.compile(r"^[A-Za-z0-9._-]+$")


def check_name(kind: str, value: str) -> str:
    if not _SAFE.match(value) or value.startswith((".", "_")):
        raise StoreError(f"{kind} {value!r} may only contain letters, digits, '.', '_' and '-'")
    return value


class ParquetStore:
    """Reads and writes the five tables under one root."""

    def __init__(self, root: str):
        self.uri = str(root)
        if "://" in self.uri:
            self.fs, path = pafs.FileSystem.from_uri(self.uri)
        else:
            self.fs, path = pafs.LocalFileSystem(), os.path.abspath(self.uri)
        self.root = path.rstrip("/") if path != "/" else path

    # -- paths ---------------------------------------------------------------------------------
    def _path(self, *parts: str) -> str:
        return str(PurePosixPath(self.root, *parts))

    def exists(self) -> bool:
        return self.fs.get_file_info(self._path("_schema.json")).type == pafs.FileType.File

    def ensure(self) -> None:
        """Create the store (or check the schema version of an existing one)."""
        if self.exists():
            with self.fs.open_input_stream(self._path("_schema.json")) as f:
                version = json.loads(f.read())["schema_version"]
            if version > SCHEMA_VERSION:
                raise StoreError(f"store {self.uri} has schema version {version}, newer than this code's "
                                 f"{SCHEMA_VERSION}; upgrade scs-sweep or use another --store")
            if version < SCHEMA_VERSION:  # additive changes only (schema.py): new columns read as null
                self._write_bytes(self._path("_schema.json"),
                                  json.dumps({"schema_version": SCHEMA_VERSION}).encode())
            return
        self.fs.create_dir(self.root, recursive=True)
        self._write_bytes(self._path("_schema.json"),
                          json.dumps({"schema_version": SCHEMA_VERSION}).encode())

    def _write_bytes(self, path: str, data: bytes) -> None:
        if self.fs.type_name not in ("local", "mock"):  # object stores: one PUT is already atomic
            with self.fs.open_output_stream(path) as f:
                f.write(data)
            return
        parent = str(PurePosixPath(path).parent)
        tmp = str(PurePosixPath(parent, f".{PurePosixPath(path).name}.{uuid.uuid4().hex}.tmp"))
        with self.fs.open_output_stream(tmp) as f:
            f.write(data)
        self.fs.move(tmp, path)

    # -- writing -------------------------------------------------------------------------------
    def write_trial(self, experiment: str, trial_id: str, tables: dict[str, list[dict]]) -> None:
        """Replace all rows of one trial in the given tables (atomic per table file)."""
        check_name("experiment", experiment)
        check_name("trial_id", trial_id)
        self.ensure()
        for table, rows in tables.items():
            if table not in TABLES:
                raise StoreError(f"unknown table {table!r}; tables: {', '.join(TABLES)}")
            folder = self._path(table, f"experiment={experiment}")
            self.fs.create_dir(folder, recursive=True)
            schema = table_schema(table)
            arrow = pa.Table.from_pylist(rows, schema=schema).replace_schema_metadata(
                {"scs_sweep_schema_version": str(SCHEMA_VERSION)})
            sink = pa.BufferOutputStream()
            pq.write_table(arrow, sink, compression="zstd")
            self._write_bytes(str(PurePosixPath(folder, f"{trial_id}.parquet")), sink.getvalue().to_pybytes())

    def write_sweep(self, experiment: str, text: str) -> None:
        """Keep the sweep file a sweep ran (STORE/_sweeps/<experiment>.toml), for provenance."""
        check_name("experiment", experiment)
        self.ensure()
        self.fs.create_dir(self._path("_sweeps"), recursive=True)
        self._write_bytes(self._path("_sweeps", f"{experiment}.toml"), text.encode())

    def read_sweep(self, experiment: str) -> str:
        """The sweep file of an experiment ("" if the store has none, e.g. rows from `gather`)."""
        try:
            with self.fs.open_input_stream(self._path("_sweeps", f"{experiment}.toml")) as f:
                return f.read().decode()
        except (FileNotFoundError, OSError):
            return ""

    # -- reading -------------------------------------------------------------------------------
    def require(self) -> None:
        if not self.exists():
            raise StoreError(f"no results store at {self.uri}; run a sweep with --store {self.uri} "
                             f"or `scs-sweep gather EXPERIMENT_DIR --store {self.uri}` first")

    def dataset(self, table: str) -> ds.Dataset:
        """One table as a lazy pyarrow dataset (`experiment` included): a scan reads only the columns
        and files it needs. Files written with an older schema read their missing columns as null."""
        if table not in TABLES:
            raise StoreError(f"unknown table {table!r}; tables: {', '.join(TABLES)}")
        self.require()
        schema = table_schema(table).append(pa.field("experiment", pa.string()))
        path = self._path(table)
        if self.fs.get_file_info(path).type != pafs.FileType.Directory:
            return ds.dataset(schema.empty_table())
        return ds.dataset(path, filesystem=self.fs, format="parquet", schema=schema,
                          partitioning=ds.partitioning(pa.schema([("experiment", pa.string())]), flavor="hive"))

    def read_table(self, table: str, experiment: str | None = None, trial_id: str | None = None,
                   columns: list[str] | None = None, where: ds.Expression | None = None) -> pa.Table:
        """The rows of one table (optionally of one experiment / trial, only some columns, only rows
        matching a pyarrow dataset expression)."""
        dataset = self.dataset(table)
        expr = where
        if experiment is not None:
            cond = ds.field("experiment") == experiment
            expr = cond if expr is None else expr & cond
        if trial_id is not None:
            cond = ds.field("trial_id") == trial_id
            expr = cond if expr is None else expr & cond
        return dataset.to_table(columns=columns, filter=expr)

    def experiments(self) -> list[str]:
        self.require()
        selector = pafs.FileSelector(self._path("trials"), allow_not_found=True)
        names = [PurePosixPath(i.path).name for i in self.fs.get_file_info(selector)]
        return sorted(n.split("=", 1)[1] for n in names if n.startswith("experiment="))


def get_store(store: "None | str | ParquetStore" = None) -> ParquetStore:
    """One resolver: None or "" -> $SCS_STORE or ./scs_store (trainables/defaults.py); a path or URI;
    or a store as it is."""
    if isinstance(store, ParquetStore):
        return store
    return ParquetStore(default_store(store or ""))
