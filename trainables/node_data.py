"""CIFAR-10 on each node's own disk, from an object store: for clusters whose nodes share no disk.

`--data s3://BUCKET/data?...` names the sweep's copy of CIFAR-10 in an object store: the files of
cifar-10-batches-bin (or -py) and MD5SUMS, one `<md5>  <path>` line per file (md5sum's format). The head
puts it there once (`put_data`: from a folder, else downloaded from the internet and checked against the
official md5); each node copies it to its local disk once (`node_copy`, under a file lock so that the
trials starting together on a node fetch it once), checks every file's md5 against MD5SUMS, and trials
read that copy, for as long as the bucket's MD5SUMS is the one it was checked against (a replaced copy,
`put-data --force`, is fetched again). Every node reads the bucket's bytes, not its own download: the sweep's data is
what the bucket holds (which may be the user's own CIFAR-format copy), the same on every node.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from filelock import FileLock

from common.errors import first_line
from common.locations import Location, LocationError

from .cifar_files import DataError, download_cifar10, find_cifar10, md5_of

__all__ = ["node_copy", "put_data", "has_data", "MD5SUMS", "CACHE_ENV"]

MD5SUMS = "MD5SUMS"
CACHE_ENV = "SCS_DATA_CACHE"   # where a node keeps its copies (default ~/.cache/scs-sweep/data)
COMPLETE = ".complete"          # written last: a copy killed half-way is fetched again


def _cache_dir(uri: str) -> Path:
    root = Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "scs-sweep" / "data")
    return root / hashlib.sha1(uri.encode()).hexdigest()[:12]


def _listed(location: Location, uri: str) -> str:
    """The bucket's MD5SUMS as it is now."""
    try:
        return location.read_text(MD5SUMS)
    except (FileNotFoundError, OSError):
        raise DataError(f"no CIFAR-10 at {uri} (no {MD5SUMS} there); put it there once with `scs-sweep put-data "
                        f"--data {uri}` (add --from FOLDER where the head has no internet)") from None


def _parse_sums(text: str, uri: str) -> dict[str, str]:
    sums = {}
    for line in text.splitlines():
        if line.strip():
            digest, _, rel = line.strip().partition("  ")
            if len(digest) != 32 or not rel or rel.startswith("/") or ".." in Path(rel).parts:
                raise DataError(f"{uri}/{MD5SUMS}: a line that is not `<md5>  <path>`: {line[:80]!r}")
            sums[rel] = digest
    return sums


def has_data(uri: str) -> bool:
    return Location(uri).is_file(MD5SUMS)


def node_copy(uri: str) -> Path:
    """The local folder holding this node's checked copy of the CIFAR-10 at uri (fetched once)."""

    dest = _cache_dir(uri)
    dest.parent.mkdir(parents=True, exist_ok=True)
    location = Location(uri)
    with FileLock(str(dest.parent / f"{dest.name}.lock")):
        listed = _listed(location, uri)
        # a copy checked against the bucket's MD5SUMS as it is now (put-data --force may have replaced it)
        if (dest / COMPLETE).exists() and (dest / COMPLETE).read_text() == listed:
            return dest
        try:
            sums = _parse_sums(listed, uri)
            shutil.rmtree(dest, ignore_errors=True)
            for rel, digest in sorted(sums.items()):
                target = dest / rel
                location.download(location.fs_path(rel), target)
                got = md5_of(target)
                if got != digest:
                    raise DataError(f"{uri}/{rel}: md5 {got} is not the {digest} that {MD5SUMS} lists "
                                    f"(a corrupt copy); put the data there again with `scs-sweep put-data --force`")
        except (OSError, LocationError) as exc:
            raise DataError(f"cannot copy CIFAR-10 from {uri} ({first_line(exc, 200)})") from None
        if find_cifar10(dest) is None:
            raise DataError(f"{uri} holds no cifar-10-batches-bin or cifar-10-batches-py folder; put-data it again")
        (dest / COMPLETE).write_text(listed)  # the list the files were checked against
    return dest


def put_data(uri: str, source: str = "", force: bool = False) -> str:
    """Copy CIFAR-10 (the folder `source` holds, else the official download) into uri with its MD5SUMS;
    nothing when uri holds a copy already, unless `force`. Returns a line saying what happened."""
    location = Location(uri)
    if location.is_file(MD5SUMS) and not force:
        return f"{uri} holds CIFAR-10 already ({MD5SUMS} is there); nothing copied (--force replaces it)"
    with tempfile.TemporaryDirectory() as tmp:
        if source:
            found = find_cifar10(Path(source))
            if found is None:
                raise DataError(f"--from {source} holds no cifar-10-batches-bin or cifar-10-batches-py folder")
        else:
            download_cifar10(Path(tmp))  # official archive, md5-checked; a DataError line without internet
            found = find_cifar10(Path(tmp))
        folder = found[1]
        lines = []
        for file in sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")):
            rel = f"{folder.name}/{file.relative_to(folder).as_posix()}"
            location.upload(file, rel)
            lines.append(f"{md5_of(file)}  {rel}")
        location.write_text("\n".join(lines) + "\n", MD5SUMS)  # last: its presence means the copy is whole
    return f"copied {len(lines)} files of {folder.name} to {uri}, with {MD5SUMS}"
