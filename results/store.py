"""The Parquet store: one Hive-style dataset per table; each trial's rows written whole, compacted after a part.

Layout (a contract: other readers rely on it)::

    STORE/_schema.json                                      {"schema_version": N}
    STORE/<table>/experiment=<name>/<trial_id>.parquet      every row of one trial in one table
    STORE/<table>/experiment=<name>/compacted-<G>.parquet   the rows of many trials, compacted (generation G)
    STORE/_compacted/<name>/<G>                             marks generation G of an experiment as current
    STORE/_sweeps/<name>.toml                               the sweep file each experiment ran
    STORE/_settle/<name>.json                               a settle's design and the path of its claims

Writing:
- A trial's file is always rewritten whole (a PUT to an object store; on a disk a dot-file renamed into
  place), so a reader never sees half a file. Rows of running trials live in these files, as they come.
- Once a part has finished, `compact(experiment)` merges the experiment's trial files (and its previous
  compacted file) into one file per table, so a query costs a few requests, not one per trial: (1) write
  compacted-<G+1> in every table, (2) write the marker _compacted/<name>/<G+1> (the commit), (3) delete
  the trial files it merged, each only if it is unchanged (size and time) since it was read, checked just
  before its delete, and the older compacted files, (4) delete the older markers. A killed compaction
  leaves files that the next one merges or deletes. One compaction of an experiment runs at a time (a
  lock file, _compacted/<name>/lock: created exclusively on a disk; on an object store written, then read
  back a second later to see whose it is); a second one skips, and a lock older than LOCK_STALE_S is a
  killed compaction's. A writer that rewrites a merged trial file in the instant between its check and its
  delete loses that rewrite; on an object store (times in whole seconds) also one that rewrites it within
  the same second to the same size. The sweep's driver compacts after a part, when its own writers of that
  part have ended.

Which rows are the experiment's (the rule the project's readers apply): the compacted file of the newest
marked generation, less the trials that have a trial file of their own, plus every trial file. A trial
file wins: `gather`, a resumed part or `evaluate` rewriting a compacted trial replaces its rows until the
next compaction merges them. The project's readers (results/, `scs-sweep query`) list the markers before
and after reading and read again if a compaction committed meanwhile, so they see each key exactly once,
also during a compaction.

A plain Parquet reader (pyarrow, pandas, DuckDB's read_parquet over STORE/<table>/**) sees every file.
It sees each key once except while a compaction runs: from its step (1) until the end of step (3),
seconds, the merged trials' rows are there twice (once in their trial files, once in the new compacted
file); after a compaction killed in that window, until the next compaction. Dot- and underscore-prefixed
files are invisible to it. Rows carry every key column except `experiment`, the Hive partition. The store
may be a local path or a URI pyarrow understands (s3://, gs://, file://); many sweeps (experiments) share
one store.
"""
from __future__ import annotations

import json
import os
import re
import socket
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path, PurePosixPath

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from common.defaults import store as default_store
from common.errors import ScsSweepError
from common.locations import Location

from .schema import SCHEMA_VERSION, TABLES, table_schema

__all__ = ["ParquetStore", "StoreError", "Snapshot", "get_store", "check_name", "COMPACTED_PREFIX"]

COMPACTED_PREFIX = "compacted-"
MARKERS = "_compacted"
READ_ATTEMPTS = 8          # reads that a compaction overlapped are repeated (with a growing pause); more is an error
LOCK_STALE_S = 600         # a compaction lock this old is a killed compaction's: the next one takes it over
IO_THREADS = 16            # requests in flight at once (an object store answers each in milliseconds)


class StoreError(ScsSweepError):
    """A store that cannot be used as asked; the message names it and what to do."""


_SAFE = re.compile(r"^[A-Za-z0-9._-]+$")


def check_name(kind: str, value: str) -> str:
    if not _SAFE.match(value) or value.startswith((".", "_")):
        raise StoreError(f"{kind} {value!r} may only contain letters, digits, '.', '_' and '-'")
    return value


def _generation(name: str) -> int:
    return int(name[len(COMPACTED_PREFIX):-len(".parquet")])


def _compacted_name(generation: int) -> str:
    return f"{COMPACTED_PREFIX}{generation:06d}.parquet"


def _is_trial_file(name: str) -> bool:
    return name.endswith(".parquet") and not name.startswith((".", "_", COMPACTED_PREFIX))


def _not_in(trial_files) -> ds.Expression:
    """The rows of trials other than those with these trial files (a trial file wins over compacted rows)."""
    return ~pc.field("trial_id").isin(sorted(name[:-len(".parquet")] for name in trial_files))


class Snapshot:
    """The store's tables as one consistent set of files: the generations current when it was taken.
    `still_current()` says whether a read made from it can be trusted (no compaction committed since)."""

    def __init__(self, store: ParquetStore):
        self.store = store
        self.generations = store.generations()

    def still_current(self) -> bool:
        return self.store.generations() == self.generations

    def dataset(self, table: str) -> ds.Dataset:
        """One table as a lazy pyarrow dataset (`experiment` included): a scan reads only the columns and
        files it needs. Files written with an older schema read their missing columns as null."""
        store = self.store
        if table not in TABLES:
            raise StoreError(f"unknown table {table!r}; tables: {', '.join(TABLES)}")
        parts = []
        for experiment, names in sorted(store.listing(table).items()):
            folder = store._path(table, f"experiment={experiment}")
            trials = [n for n in names if _is_trial_file(n)]
            if trials:
                parts.append(store._files_dataset([f"{folder}/{n}" for n in trials], table, experiment))
            current = _compacted_name(self.generations[experiment]) if experiment in self.generations else ""
            if current in names:
                compacted = store._files_dataset([f"{folder}/{current}"], table, experiment)
                if trials:  # a trial file wins: its trial's compacted rows are left out (in memory; rare)
                    compacted = ds.dataset(compacted.to_table(filter=_not_in(trials)))
                parts.append(compacted)
        if not parts:
            return ds.dataset(table_schema(table).append(pa.field("experiment", pa.string())).empty_table())
        return parts[0] if len(parts) == 1 else ds.dataset(parts)


class ParquetStore:
    """Reads and writes the five tables under one root."""

    def __init__(self, root: str):
        self.location = Location(str(root))
        self.uri, self.fs = self.location.uri, self.location.fs
        self.root = self.location.path.rstrip("/") or "/"

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
        self.location.write_bytes(data, str(PurePosixPath(path).relative_to(self.location.path)))

    # -- writing -------------------------------------------------------------------------------
    def write_trial(self, experiment: str, trial_id: str, tables: dict[str, list[dict]]) -> None:
        """Replace all rows of one trial in the given tables (atomic per table file)."""
        check_name("experiment", experiment)
        check_name("trial_id", trial_id)
        if trial_id.startswith(COMPACTED_PREFIX):
            raise StoreError(f"trial_id {trial_id!r}: names starting with {COMPACTED_PREFIX!r} are the store's own")
        self.ensure()
        for table, rows in tables.items():
            if table not in TABLES:
                raise StoreError(f"unknown table {table!r}; tables: {', '.join(TABLES)}")
            arrow = pa.Table.from_pylist(rows, schema=table_schema(table))
            self._write_table(self._path(table, f"experiment={experiment}", f"{trial_id}.parquet"), arrow)

    def _write_table(self, path: str, table: pa.Table) -> None:
        table = table.replace_schema_metadata({"scs_sweep_schema_version": str(SCHEMA_VERSION)})
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, compression="zstd")
        self._write_bytes(path, sink.getvalue().to_pybytes())

    def write_sweep(self, experiment: str, text: str) -> None:
        """Keep the sweep file a sweep ran (STORE/_sweeps/<experiment>.toml), for provenance."""
        check_name("experiment", experiment)
        self.ensure()
        self._write_bytes(self._path("_sweeps", f"{experiment}.toml"), text.encode())

    def write_settle(self, experiment: str, record: dict) -> None:
        """Keep a settle's design and path (STORE/_settle/<experiment>.json): the report shows them."""
        check_name("experiment", experiment)
        self.ensure()
        self._write_bytes(self._path("_settle", f"{experiment}.json"), json.dumps(record, indent=1).encode())

    def read_settle(self, experiment: str) -> dict:
        """A settle's record ({} if the experiment was not settled); StoreError for one that is not JSON."""
        path = self._path("_settle", f"{experiment}.json")
        try:
            with self.fs.open_input_stream(path) as f:
                text = f.read().decode()
        except FileNotFoundError:
            return {}
        try:
            return json.loads(text)
        except ValueError as exc:
            raise StoreError(f"{path} is not a settle record (not JSON: {exc})") from None

    def read_sweep(self, experiment: str) -> str:
        """The sweep file of an experiment ("" if the store has none, e.g. rows from `gather`)."""
        try:
            with self.fs.open_input_stream(self._path("_sweeps", f"{experiment}.toml")) as f:
                return f.read().decode()
        except FileNotFoundError:
            return ""

    # -- compaction ----------------------------------------------------------------------------
    def compact(self, experiment: str) -> dict:
        """Merge an experiment's trial files into one compacted file per table (the steps in the module's
        docstring); returns {"files_before", "files_after", "generation"}. Call it when no trial of the
        experiment is running: a trial file rewritten while this runs is kept (it wins), never lost."""
        check_name("experiment", experiment)
        if not self.exists():
            return {"files_before": 0, "files_after": 0, "generation": 0}
        with self._compaction_lock(experiment) as held:
            if not held:  # another compaction of it runs: its trial files stay, and win, until the next one
                return {"files_before": 0, "files_after": 0, "generation": self.generations().get(experiment, 0),
                        "skipped": True}
            return self._compact(experiment)

    def _compact(self, experiment: str) -> dict:
        old = self.generations().get(experiment, 0)
        new = old + 1
        before, merged = {}, {}
        for table in TABLES:
            folder = self._path(table, f"experiment={experiment}")
            infos = self._folder_infos(folder)
            before[table] = infos
            trials = {n: i for n, i in infos.items() if _is_trial_file(n)}
            current = _compacted_name(old) if old and _compacted_name(old) in infos else ""
            if not trials and not current:
                continue
            pieces = []
            if current:
                kept = self._files_dataset([f"{folder}/{current}"], table).to_table()
                if trials:
                    kept = kept.filter(_not_in(trials))
                pieces.append(kept)
            if trials:
                pieces.append(self._files_dataset([f"{folder}/{n}" for n in sorted(trials)], table).to_table())
            rows = pa.concat_tables(pieces).sort_by([("trial_id", "ascending")])
            self._write_table(f"{folder}/{_compacted_name(new)}", rows)
            merged[table] = trials
        self._write_bytes(self._path(MARKERS, experiment, f"{new:06d}"),
                          json.dumps({"generation": new, "tables": sorted(merged)}).encode())  # the commit
        merged_files, superseded = {}, []
        for table, trials in merged.items():
            folder = self._path(table, f"experiment={experiment}")
            merged_files.update({f"{folder}/{n}": (info.size, info.mtime_ns) for n, info in trials.items()})
            superseded += [f"{folder}/{n}" for n in self._folder_infos(folder)
                           if n.startswith(COMPACTED_PREFIX) and n != _compacted_name(new)]
        self._delete_unchanged(merged_files)
        self._delete(superseded)
        self._delete([self._path(MARKERS, experiment, n) for n in self._names(self._path(MARKERS, experiment))
                      if n.isdigit() and int(n) < new])
        after = sum(len(self._folder_infos(self._path(t, f"experiment={experiment}"))) for t in TABLES)
        return {"files_before": sum(len(v) for v in before.values()), "files_after": after, "generation": new}

    def _delete_unchanged(self, expected: dict[str, tuple]) -> None:
        """Delete each file whose (size, mtime) is still what was read: a file rewritten since stays (it wins).
        Each file is checked just before its own delete, which keeps the window to one request."""
        for path in sorted(expected):
            info = self.fs.get_file_info(path)
            if info.type == pafs.FileType.File and (info.size, info.mtime_ns) == expected[path]:
                self._delete([path])

    @contextmanager
    def _compaction_lock(self, experiment: str):
        """Yields whether this process holds the experiment's compaction lock (see the module docstring)."""
        path = self._path(MARKERS, experiment, "lock")
        token = f"{socket.gethostname()} {os.getpid()} {uuid.uuid4().hex}"
        info = self.fs.get_file_info(path)
        if info.type == pafs.FileType.File and info.mtime_ns and time.time() - info.mtime_ns / 1e9 < LOCK_STALE_S:
            yield False
            return
        if self.location.remote:
            self._write_bytes(path, token.encode())
            time.sleep(1.0)  # a rival's write in the meantime wins: read back whose the lock is
            held = self.location.read_text(str(PurePosixPath(path).relative_to(self.location.path))) == token
        else:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            if info.type == pafs.FileType.File:  # stale: a killed compaction's
                Path(path).unlink(missing_ok=True)
            try:
                os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
                held = True
            except FileExistsError:
                held = False
        try:
            yield held
        finally:
            if held:
                self._delete_file(path)

    def _delete_file(self, path: str) -> None:
        try:
            self.fs.delete_file(path)
        except FileNotFoundError:
            pass

    def _delete(self, paths: list[str]) -> None:
        with ThreadPoolExecutor(IO_THREADS) as pool:
            list(pool.map(self._delete_file, paths))

    def _folder_infos(self, folder: str) -> dict[str, pafs.FileInfo]:
        selector = pafs.FileSelector(folder, allow_not_found=True)
        return {PurePosixPath(i.path).name: i for i in self.fs.get_file_info(selector)
                if i.type == pafs.FileType.File}

    def _names(self, folder: str) -> list[str]:
        selector = pafs.FileSelector(folder, allow_not_found=True)
        return [PurePosixPath(i.path).name for i in self.fs.get_file_info(selector)]

    # -- reading -------------------------------------------------------------------------------
    def require(self) -> None:
        if not self.exists():
            raise StoreError(f"no results store at {self.uri}; run a sweep with --store {self.uri} "
                             f"or `scs-sweep gather EXPERIMENT_DIR --store {self.uri}` first")

    def generations(self) -> dict[str, int]:
        """experiment -> its current compacted generation (experiments never compacted are absent): one
        listing of STORE/_compacted."""
        selector = pafs.FileSelector(self._path(MARKERS), allow_not_found=True, recursive=True)
        out: dict[str, int] = {}
        for info in self.fs.get_file_info(selector):
            path = PurePosixPath(info.path)
            if info.type == pafs.FileType.File and path.name.isdigit():
                out[path.parent.name] = max(out.get(path.parent.name, 0), int(path.name))
        return out

    def listing(self, table: str) -> dict[str, list[str]]:
        """experiment -> the file names in its folder of one table (one recursive listing)."""
        selector = pafs.FileSelector(self._path(table), allow_not_found=True, recursive=True)
        out: dict[str, list[str]] = {}
        for info in self.fs.get_file_info(selector):
            path = PurePosixPath(info.path)
            if info.type == pafs.FileType.File and path.parent.name.startswith("experiment="):
                out.setdefault(path.parent.name.split("=", 1)[1], []).append(path.name)
        return out

    def _files_dataset(self, paths: list[str], table: str, experiment: str | None = None) -> ds.Dataset:
        """Files of one table as a dataset, built without a request (no listing, no per-file stat); with
        `experiment`, its column comes from the partition, as a Hive reader would fill it."""
        if experiment is None:
            return ds.FileSystemDataset.from_paths(paths, schema=table_schema(table), format=ds.ParquetFileFormat(),
                                                   filesystem=self.fs)
        schema = table_schema(table).append(pa.field("experiment", pa.string()))
        return ds.FileSystemDataset.from_paths(paths, schema=schema, format=ds.ParquetFileFormat(), filesystem=self.fs,
                                               partitions=[ds.field("experiment") == experiment] * len(paths))

    def snapshot(self) -> Snapshot:
        self.require()
        return Snapshot(self)

    def read(self, read_fn):
        """read_fn(snapshot) with each key exactly once: repeated when a compaction committed while it
        read (or deleted a file it was about to read)."""
        for attempt in range(READ_ATTEMPTS):
            if attempt:
                time.sleep(0.05 * attempt)  # let the compaction that overlapped this read finish
            snapshot = self.snapshot()
            try:
                out = read_fn(snapshot)
            except OSError as exc:  # a file listed, then deleted: a compaction finished merging it
                if attempt + 1 < READ_ATTEMPTS:
                    continue
                raise StoreError(f"store {self.uri}: {exc}") from None
            if snapshot.still_current():
                return out
        raise StoreError(f"store {self.uri} changed {READ_ATTEMPTS} times while it was read (compactions); "
                         f"try again")

    def dataset(self, table: str) -> ds.Dataset:
        """One table as a lazy dataset of the files current now (read it through `read` for the guarantee
        that a compaction running meanwhile neither hides nor repeats a key)."""
        return self.snapshot().dataset(table)

    def read_table(self, table: str, experiment: str | None = None, trial_id: str | None = None,
                   columns: list[str] | None = None, where: ds.Expression | None = None) -> pa.Table:
        """The rows of one table (optionally of one experiment / trial, only some columns, only rows
        matching a pyarrow dataset expression)."""
        expr = where
        if experiment is not None:
            cond = ds.field("experiment") == experiment
            expr = cond if expr is None else expr & cond
        if trial_id is not None:
            cond = ds.field("trial_id") == trial_id
            expr = cond if expr is None else expr & cond
        return self.read(lambda snapshot: snapshot.dataset(table).to_table(columns=columns, filter=expr))

    def experiments(self) -> list[str]:
        self.require()
        return sorted(n.split("=", 1)[1] for n in self._names(self._path("trials")) if n.startswith("experiment="))


def get_store(store: None | str | ParquetStore = None) -> ParquetStore:
    """One resolver: None or "" -> $SCS_STORE or ./scs_store (trainables/defaults.py); a path or URI;
    or a store as it is."""
    if isinstance(store, ParquetStore):
        return store
    return ParquetStore(default_store(store or ""))
