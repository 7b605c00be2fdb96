"""Where a sweep's Tune runs live (`--storage`, $SCS_RUNS): a folder every node sees, or an object store.

STORAGE/<sweep>/ holds what a new head needs to continue: the plan (sweep.json), the sweep file it ran
(sweep.toml), a settle's state (settle.json), a copy of the Optuna study (optuna.db) and one folder per
part, which Tune fills (experiment state, each trial's params.json, result.json, error.txt and
checkpoints). With `s3://...` storage Tune writes through a pyarrow filesystem, and the trials on every
node upload their checkpoints there themselves: no node needs a shared disk.

What must stay on a disk lives on the head's own (`local_dir`, under ~/.cache/scs-sweep/runs, or
$SCS_LOCAL_RUNS): the live Optuna study (SQLite, copied to the storage as trials end and after each part,
tuner.KeepStudy, and fetched from it when a new head resumes) and a mirror of the small files (`view`),
which the Path-based readers of records.py read as they read a local sweep folder. A checkpoint is
mirrored as an empty file of the same name: `uri_of` turns the mirror's path back into the storage's name
for it. `local_view` gives gather and evaluate the same mirror of a folder named by URI.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import uuid
from contextlib import contextmanager
from pathlib import Path, PurePosixPath

import pyarrow.fs as pafs

from common import defaults
from common.locations import Location
from common.uris import is_uri

from .plan import SweepPlan

SWEEP_FILE = "sweep.toml"   # the sweep file (or the preset as one) that a sweep ran, in its folder
SETTLE_FILE = "settle.json"  # a settle's record (results/settled.py), in its folder: what marks a sweep a settle

__all__ = ["Storage", "SweepFolder", "mirror", "local_view", "sweep_name_above", "LOCAL_ENV"]

LOCAL_ENV = "SCS_LOCAL_RUNS"        # the head's local folder for a remote storage's mirror and Optuna study
# what records.py, the scheduler and `status` read; everything else (checkpoints, TensorBoard files) is not
# downloaded (a checkpoint is mirrored as an empty file, so that it can be found and named)
MIRRORED = ("params.json", "result.json", "error.txt", "sweep.json", "sweep.toml", "settle.json", "tuner.pkl")
MIRROR_INDEX = ".mirror.json"


def _wanted(name: str) -> bool:
    return name in MIRRORED or (name.startswith("experiment_state-") and name.endswith(".json"))


def _local_root() -> Path:
    return Path(os.environ.get(LOCAL_ENV) or Path.home() / ".cache" / "scs-sweep" / "runs")


def mirror(fs: pafs.FileSystem, fs_path: str, dest: Path) -> Path:
    """Download the small files below fs_path into dest, each only when its size or time changed since the
    last mirror (result.json grows epoch by epoch); checkpoint files become empty placeholders."""
    dest.mkdir(parents=True, exist_ok=True)
    index_file = dest / MIRROR_INDEX
    try:
        index = json.loads(index_file.read_text())
    except (OSError, ValueError):
        index = {}
    selector = pafs.FileSelector(fs_path, allow_not_found=True, recursive=True)
    seen = set()
    for info in fs.get_file_info(selector):
        if info.type != pafs.FileType.File:
            continue
        rel = str(PurePosixPath(info.path).relative_to(fs_path))
        seen.add(rel)
        target = dest / rel
        stamp = [info.size, info.mtime_ns]
        if index.get(rel) == stamp and target.exists():
            continue
        if info.base_name == defaults.CHECKPOINT_FILE:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.touch()
        elif _wanted(info.base_name):
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.part")  # two mirrors at once (status, driver)
            with fs.open_input_stream(info.path) as src:
                tmp.write_bytes(src.read())
            tmp.replace(target)
        else:
            continue
        index[rel] = stamp
    for rel in set(index) - seen:  # gone from the storage (Tune keeps only the newest checkpoints)
        (dest / rel).unlink(missing_ok=True)
        del index[rel]
    tmp = index_file.with_name(f"{MIRROR_INDEX}.{uuid.uuid4().hex}")
    tmp.write_text(json.dumps(index))
    tmp.replace(index_file)
    return dest


def sweep_name_above(where: Location, levels: int = 3) -> str:
    """The name of the sweep folder (the one with sweep.json) at or above a place in an object store, or
    an empty string if none is within `levels` folders up: what sweep_name_of finds for a local path."""
    path = PurePosixPath(where.path)
    for folder in [path, *path.parents][:levels + 1]:
        if folder.name and where.fs.get_file_info(str(folder / "sweep.json")).type == pafs.FileType.File:
            return folder.name
    return ""


@contextmanager
def local_view(given: str, prefix: str = "scs-"):
    """(a local path for `given`, fetch(path) that makes a checkpoint found under it readable, the sweep's
    name or ""): the path itself, or for a URI a temporary mirror of the trial or sweep folder (its small
    files, named as in the storage) whose checkpoints are downloaded when fetched. What gather and evaluate
    read a folder in an object store through."""
    if not is_uri(given):
        yield Path(given), lambda path: path, ""
        return
    where = Location(given)
    # a checkpoint file: its trial folder (checkpoint_NNNNNN/trainer.pt two levels up) says its trial id
    single = where.is_file()
    folder = Location(where.uri_of(str(PurePosixPath(where.path).parent.parent))) if single else where
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        root = mirror(folder.fs, folder.path, Path(tmp) / PurePosixPath(folder.path).name)

        def fetch(path: Path) -> Path:
            folder.download(folder.fs_path(path.relative_to(root).as_posix()), path)
            return path

        local = root / PurePosixPath(where.path).relative_to(folder.path) if single else root
        yield local, fetch, sweep_name_above(folder)


class Storage:
    """The folder (or bucket prefix) that holds every sweep's folder."""

    def __init__(self, given: str = ""):
        self.location = Location(defaults.runs_dir(given))
        self.uri, self.remote = self.location.uri, self.location.remote

    def __str__(self) -> str:
        return self.uri

    def sweep(self, name: str) -> SweepFolder:
        return SweepFolder(self, name)

    def sweeps(self) -> list[str]:
        """The names of the sweeps stored here (the folders with a sweep.json)."""
        return [name for name in self.location.names() if self.location.is_file(name, "sweep.json")]

    def check_writable(self) -> None:
        self.location.check_writable("--storage")


class SweepFolder:
    """STORAGE/<name>: the sweep's files, read and written wherever the storage is."""

    def __init__(self, storage: Storage, name: str):
        self.storage, self.name = storage, name
        self.location = storage.location.child(name)
        self.remote = storage.remote
        self.local_dir = self._local_dir()  # fixed once: every part of this process uses the same disk folder

    def __str__(self) -> str:
        return self.location.uri if self.remote else str(Path(self.location.path))

    # -- the sweep's own files ----------------------------------------------------------------------
    def exists(self, file: str) -> bool:
        return self.location.is_file(file)

    def read_text(self, file: str) -> str:
        return self.location.read_text(file)

    def write_text(self, file: str, text: str) -> None:
        self.location.write_text(text, file)

    def remove(self, file: str) -> None:
        self.location.delete(file)

    def uri_of_file(self, file: str) -> str:
        """What names one of the sweep's own files for another process: its path, or its URI."""
        return self.location.uri_of(self.location.fs_path(file))

    def save_plan(self, plan) -> None:
        self.write_text("sweep.json", plan.to_json())

    def load_plan(self) -> SweepPlan:
        return SweepPlan.from_json(lambda: self.read_text("sweep.json"), f"{self}/sweep.json")

    # -- what Tune is given -------------------------------------------------------------------------
    def tune_path(self) -> str:
        """RunConfig's storage_path for this sweep's parts (with `filesystem`)."""
        return self.location.path

    @property
    def filesystem(self) -> pafs.FileSystem | None:
        """RunConfig's storage_filesystem: the object store's own (None for a local folder: Tune's default)."""
        return self.location.fs if self.remote else None

    def part_path(self, part: str) -> str:
        return self.location.fs_path(part)

    # -- what must stay on a disk -------------------------------------------------------------------
    def _local_dir(self) -> Path:
        """A folder on this machine's disk for this sweep: the sweep folder itself when the storage is a
        local folder; else one per storage URI and sweep under ~/.cache/scs-sweep/runs."""
        if not self.remote:
            return Path(self.location.path)
        digest = hashlib.sha1(self.storage.uri.encode()).hexdigest()[:10]
        return _local_root() / f"{digest}-{self.name}"

    def view(self) -> Path:
        """A local folder with the sweep's small files as they are in the storage now (the folder itself
        when the storage is local): what records.py reads."""
        if not self.remote:
            return Path(self.location.path)
        return mirror(self.location.fs, self.location.path, self.local_dir / "mirror")

    def uri_of(self, viewed: Path) -> str:
        """The storage's name (a URI, or the path) of a file found in `view()`."""
        if not self.remote:
            return str(viewed)
        rel = viewed.relative_to(self.local_dir / "mirror").as_posix()
        return self.location.uri_of(self.location.fs_path(rel))

    def fetch(self, local_file: Path) -> None:
        """The storage's copy of a kept file, onto this head's disk, when this disk has none (a new head)."""
        if self.remote and not local_file.exists() and self.exists(local_file.name):
            self.location.download(self.location.fs_path(local_file.name), local_file)
