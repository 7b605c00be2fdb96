"""A local folder or an object-store URI, read and written the same way: where runs, the store and data live.

`--storage`, `--store` and `--data` (and $SCS_RUNS, $SCS_STORE, $SCS_DATA) each take a folder or a URI that
pyarrow understands: `s3://BUCKET/PREFIX`, with query options for S3-compatible servers (MinIO, Ceph, a
lab's own), e.g. `s3://scs/runs?endpoint_override=http://10.0.0.5:9000&scheme=http`, or `gs://...`.
Credentials come from where the AWS SDK looks (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, ~/.aws, an
instance profile); the region from AWS_DEFAULT_REGION or `?region=`.

`Location.check_writable` is the one check before anything starts: it writes and deletes one small object,
in seconds (a short timeout and one retry, whatever the SDK's defaults), and turns every way that fails
(no bucket, wrong or missing credentials, an endpoint that does not answer) into one line naming the URI
and what to set. Plain Python with pyarrow (no torch): every package may use it.
"""
from __future__ import annotations

import os
import re
import threading
import uuid
from pathlib import Path, PurePosixPath
from urllib.parse import parse_qsl, urlsplit

import pyarrow.fs as pafs

from .errors import ScsSweepError, first_line
from .uris import is_uri

__all__ = ["Location", "LocationError", "explain_error", "CHECK_TIMEOUT_S"]

CHECK_TIMEOUT_S = 20.0   # the write check gives up after this long (an endpoint that swallows packets)
CREDENTIAL_HINT = ("set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or an instance profile), AWS_DEFAULT_REGION "
                   "or ?region=, and for a non-AWS server ?endpoint_override=http://HOST:PORT&scheme=http")


class LocationError(ScsSweepError):
    """A folder or URI that cannot be used; the message names it and what to set."""


class Location:
    """One folder, local or in an object store: `fs` (a pyarrow filesystem) and `path` in it.

    `uri` is what the user gave (for URIs, kept with its query options so that other processes, e.g. a
    trial on another node, can open the same place); `child(...)` names a place below it the same way.
    """

    def __init__(self, uri: str):
        text = str(uri)
        if text.startswith("file://"):
            text = text[len("file://"):]
        self.remote = is_uri(text)
        if self.remote:
            parts = urlsplit(text)
            if parts.scheme in ("s3", "gs", "gcs") and not parts.netloc.rpartition("@")[2]:
                raise LocationError(f"{text} names no bucket; give {parts.scheme}://BUCKET/PREFIX (and for a "
                                    f"non-AWS server ?endpoint_override=http://HOST:PORT&scheme=http)")
            options = dict(parse_qsl(parts.query))
            opened = text
            region = os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION")
            if parts.scheme == "s3" and region and "region" not in options and "endpoint_override" not in options:
                # without a region pyarrow asks AWS for the bucket's over the network, even for a bad URI
                opened = text + ("&" if parts.query else "?") + f"region={region}"
            try:
                self.fs, path = pafs.FileSystem.from_uri(opened)
            except OSError as exc:
                raise LocationError(f"{text}: {explain_error(exc)}") from None
            except (ValueError, TypeError) as exc:
                raise LocationError(f"{text} is not a URI pyarrow can open ({first_line(exc)}); give "
                                    f"s3://BUCKET/PREFIX[?endpoint_override=...&scheme=http] or a folder") from None
            self.path = path.rstrip("/")
            self._scheme, self._query = parts.scheme, parts.query
            # credentials written into the URI (s3://KEY:SECRET@bucket/...) stay with every place named below it
            self._userinfo = parts.netloc.rpartition("@")[0] + "@" if "@" in parts.netloc else ""
            self.uri = text
        else:
            self.fs = pafs.LocalFileSystem()
            self.path = os.path.abspath(os.path.expanduser(text))
            self._scheme, self._query, self._userinfo = "", "", ""
            self.uri = self.path

    def __repr__(self) -> str:
        return f"Location({self.uri!r})"

    @property
    def bucket(self) -> str:
        return self.path.split("/", 1)[0] if self.remote else ""

    def query_options(self) -> dict:
        return dict(parse_qsl(self._query))

    # -- naming ---------------------------------------------------------------------------------
    def fs_path(self, *parts: str) -> str:
        """The path of a place below this one, in `fs`."""
        return str(PurePosixPath(self.path, *parts)) if parts else self.path

    def uri_of(self, fs_path: str) -> str:
        """What names `fs_path` (a path in `fs`) for another process: a URI with this one's options, or
        the local path."""
        if not self.remote:
            return fs_path
        return f"{self._scheme}://{self._userinfo}{fs_path}" + (f"?{self._query}" if self._query else "")

    def child(self, *parts: str) -> Location:
        return Location(self.uri_of(self.fs_path(*parts)))

    # -- reading and writing --------------------------------------------------------------------
    def kind(self, *parts: str) -> pafs.FileType:
        return self.fs.get_file_info(self.fs_path(*parts)).type

    def is_file(self, *parts: str) -> bool:
        return self.kind(*parts) == pafs.FileType.File

    def is_dir(self, *parts: str) -> bool:
        if not self.remote:
            return self.kind(*parts) == pafs.FileType.Directory
        # an object store has no folders, only keys below a prefix
        listing = self.fs.get_file_info(pafs.FileSelector(self.fs_path(*parts), allow_not_found=True))
        return bool(listing)

    def read_bytes(self, *parts: str) -> bytes:
        with self.fs.open_input_stream(self.fs_path(*parts)) as f:
            return f.read()

    def read_text(self, *parts: str) -> str:
        return self.read_bytes(*parts).decode()

    def write_bytes(self, data: bytes, *parts: str) -> None:
        """Write one file whole: a reader sees the old file or the new one, never part of it (an object
        store's PUT is atomic; on a disk, a dot-file renamed into place)."""
        path = self.fs_path(*parts)
        parent = str(PurePosixPath(path).parent)
        if self.remote:
            with self.fs.open_output_stream(path) as f:
                f.write(data)
            return
        self.fs.create_dir(parent, recursive=True)
        tmp = str(PurePosixPath(parent, f".{PurePosixPath(path).name}.{uuid.uuid4().hex}.tmp"))
        with self.fs.open_output_stream(tmp) as f:
            f.write(data)
        self.fs.move(tmp, path)

    def write_text(self, text: str, *parts: str) -> None:
        self.write_bytes(text.encode(), *parts)

    def files(self, *parts: str, recursive: bool = True) -> list[pafs.FileInfo]:
        """Every file below a place (none if it is not there)."""
        selector = pafs.FileSelector(self.fs_path(*parts), allow_not_found=True, recursive=recursive)
        return [i for i in self.fs.get_file_info(selector) if i.type == pafs.FileType.File]

    def names(self, *parts: str) -> list[str]:
        """The names directly below a place (files and folders; none if it is not there)."""
        selector = pafs.FileSelector(self.fs_path(*parts), allow_not_found=True)
        return sorted(PurePosixPath(i.path).name for i in self.fs.get_file_info(selector))

    def delete(self, *parts: str) -> None:
        """Delete a file here (nothing when it is not there)."""
        try:
            self.fs.delete_file(self.fs_path(*parts))
        except FileNotFoundError:
            pass

    def download(self, fs_path: str, dest: Path) -> None:
        """One file to a local path (written aside, then renamed)."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}.part")
        pafs.copy_files(fs_path, str(tmp), source_filesystem=self.fs,
                        destination_filesystem=pafs.LocalFileSystem())
        tmp.replace(dest)

    def upload(self, source: Path, *parts: str) -> None:
        self.write_bytes(Path(source).read_bytes(), *parts)

    # -- the check before anything starts -----------------------------------------------------
    def check_writable(self, flag: str) -> None:
        """Write and delete one small object below this place, or raise one LocationError line that names
        `flag` (e.g. --storage), the URI and what to set. A local folder is created if missing."""
        if not self.remote:
            try:
                Path(self.path).mkdir(parents=True, exist_ok=True)
                probe = Path(self.path, f".scs-write-check-{uuid.uuid4().hex}")
                probe.write_bytes(b"")
                probe.unlink()
            except OSError as exc:
                raise LocationError(f"{flag} {self.uri}: cannot write there ({exc.strerror or exc}); give a "
                                    f"folder you can write") from None
            return
        outcome: list = []

        def attempt():
            try:
                key = self.fs_path(f".scs-write-check-{uuid.uuid4().hex}")
                with self.fs.open_output_stream(key) as f:
                    f.write(b"")
                self.fs.delete_file(key)
                outcome.append(None)
            except Exception as exc:  # noqa: BLE001 - pyarrow raises OSError, ValueError... per cause
                outcome.append(exc)

        # a daemon thread: an endpoint that never answers cannot hold the command past the timeout
        worker = threading.Thread(target=attempt, daemon=True)
        worker.start()
        worker.join(CHECK_TIMEOUT_S)
        if not outcome:
            raise LocationError(f"{flag} {self.uri}: no answer from the object store in {CHECK_TIMEOUT_S:.0f} s; "
                                f"check the endpoint ({self.query_options().get('endpoint_override', 'AWS')}) "
                                f"and the network; {CREDENTIAL_HINT}")
        if outcome[0] is not None:
            raise LocationError(f"{flag} {self.uri}: cannot write there: {explain_error(outcome[0], self.bucket)}")


DENIED = ("ACCESS_DENIED", "INVALID_ACCESS_KEY_ID", "InvalidAccessKeyId", "SIGNATURE_DOES_NOT_MATCH",
          "SignatureDoesNotMatch")


def explain_error(exc: BaseException, bucket: str = "") -> str:
    """What an object store's SDK said, as one line, with the fix for the usual causes."""
    text = str(exc)
    named = re.search(r"in bucket '([^']+)'", text)
    bucket = bucket or (named.group(1) if named else "?")
    if "NO_SUCH_BUCKET" in text or "bucket does not exist" in text.lower():
        return (f"bucket {bucket!r} does not exist; create it (`aws s3 mb s3://{bucket}`, or the server's own "
                f"tool), or name one that does")
    # the network first: a refused connection's text carries its delay ("after 403 ms")
    if "NETWORK_CONNECTION" in text or "curlCode" in text or "Could not connect" in text \
            or "Couldn't resolve" in text:
        return f"the object store does not answer ({first_line(exc)}); {CREDENTIAL_HINT}"
    if any(mark in text for mark in DENIED) or "HTTP status 403" in text:
        return f"access denied (wrong or missing credentials, or no write permission); {CREDENTIAL_HINT}"
    if "credentials" in text.lower():
        return f"no credentials found; {CREDENTIAL_HINT}"
    return f"{first_line(exc)}; {CREDENTIAL_HINT}"
