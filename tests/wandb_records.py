"""Read an offline W&B run's ``run-*.wandb`` file, so tests can check what was logged.

The file is a LevelDB-style log of protobuf ``Record``s: a 7-byte file header, then
32 KiB blocks of chunks, each with a 7-byte header (crc32, length, type); records
larger than a block are split into FIRST/MIDDLE/LAST chunks.

A private format, parsed by hand because the installed wandb (0.31) ships no reader for it, public
or private: ``wandb.sdk.internal.datastore`` (older releases' private reader) is gone, wandb-core
(Go) reads these files only inside ``wandb sync`` and the ``wandb leet`` terminal UI, and
``wandb sync --view`` was removed; only the (undocumented) ``Record`` protobuf classes in
``wandb.proto.wandb_internal_pb2`` remain. A wandb release may change the framing.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

from wandb.proto import wandb_internal_pb2 as pb

_BLOCK = 32768
_HEADER = 7
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def records(path: str | Path) -> list[pb.Record]:
    data = Path(path).read_bytes()
    ident, magic, version = struct.unpack("<4sHB", data[:_HEADER])
    assert ident == b":W&B" and magic == 0xBEE1, f"{path} is not a W&B run file"
    out, pending, pos = [], b"", _HEADER
    while pos + _HEADER <= len(data):
        if _BLOCK - pos % _BLOCK < _HEADER:  # block trailer too small for a header: skip it
            pos += _BLOCK - pos % _BLOCK
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + _HEADER])
        chunk = data[pos + _HEADER:pos + _HEADER + length]
        pos += _HEADER + length
        if kind in (_FULL, _LAST):
            record = pb.Record()
            record.ParseFromString(pending + chunk)
            out.append(record)
            pending = b""
        elif kind in (_FIRST, _MIDDLE):
            pending += chunk
        else:
            break  # zero padding at the end of the file
    return out


def run_file(save_dir: str | Path) -> Path:
    (path,) = Path(save_dir).glob("wandb/offline-run-*/run-*.wandb")
    return path


def history(path: str | Path) -> list[dict]:
    """Each logged step as {key: value}, values decoded from JSON."""
    rows = []
    for r in records(path):
        if r.WhichOneof("record_type") == "history":
            rows.append({item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in r.history.item})
    return rows


def run_info(path: str | Path) -> pb.RunRecord:
    """The last run record (tags, group, ...)."""
    runs = [r.run for r in records(path) if r.WhichOneof("record_type") == "run"]
    return runs[-1]


def config(path: str | Path) -> dict:
    out = {}
    for r in records(path):
        if r.WhichOneof("record_type") == "config":
            for item in r.config.update:
                out[item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
    return out
