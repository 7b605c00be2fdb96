"""The records of a W&B run's offline file (`run-ID.wandb`), read without W&B's own reader (its Python reader
went with wandb-core): LevelDB's log format, as W&B writes it. A 7-byte file header (":W&B", magic 0xBEE1,
version 0), then 32 KiB blocks of records, each a 7-byte header (CRC-32, length, type: 1 full, 2 first,
3 middle, 4 last) and its bytes; a block's last bytes under 7 are padding. Each whole record is a W&B Record
protobuf."""
import json
import struct
from pathlib import Path

BLOCK, HEADER = 32 * 1024, 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path: Path) -> list[bytes]:
    data = Path(path).read_bytes()
    if data[:4] != b":W&B":
        raise ValueError(f"{path} is not a W&B run file")
    out, pending, pos = [], b"", HEADER
    while pos + HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        if left < HEADER:  # the block's tail: padding
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + HEADER])
        chunk = data[pos + HEADER:pos + HEADER + length]
        pos += HEADER + length
        if kind == FULL:
            out.append(chunk)
        elif kind == FIRST:
            pending = chunk
        elif kind == MIDDLE:
            pending += chunk
        elif kind == LAST:
            out.append(pending + chunk)
            pending = b""
        elif kind == 0 and length == 0:  # zeroed space at the end of a file still being written
            break
    return out


def history(run_dir: Path) -> list[dict]:
    """The history rows (what run.log wrote) of an offline run folder."""
    from wandb.proto import wandb_internal_pb2

    (path,) = Path(run_dir).glob("*.wandb")
    rows = []
    for data in records(path):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(data)
        if record.WhichOneof("record_type") == "history":
            rows.append({item.key or "/".join(item.nested_key): json.loads(item.value_json)
                         for item in record.history.item})
    return rows
