"""Read ZooKeeper's transaction log: every committed write, with the session that sent it.

`bench election`'s idle window counts writes per agent from this, not from znode versions: a
multi (the holder's renewal and heartbeat together) is one transaction -- one proposal, one log
record, one fsync on every server -- though it moves two versions, and a write to a znode nobody
expected (history, requests) shows with its path instead of as a bare "unattributed" count.

The format is ZooKeeper's FileTxnLog (jute, big-endian): a file header (magic "ZKLG", version,
dbid), then records `long crc, int len, byte[len] txn, byte 'B'`, where the txn is a TxnHeader
(clientId = session id, cxid, zxid, time, type) followed by the type's record. The tail of a log
file is preallocated zeros: a zero length ends it.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

MAGIC = b"ZKLG"
_HEADER = struct.Struct(">qiqqi")  # clientId, cxid, zxid, time, type
#: ZooDefs.OpCode values that appear in the log
OPS = {1: "create", 2: "delete", 5: "set", 7: "setACL", 13: "check", 14: "multi", 15: "create", 19: "create",
       21: "create", -10: "createSession", -11: "closeSession", -1: "error"}
_PATH_OPS = {1, 2, 5, 7, 13, 15, 19, 21}  # records that start with the path (a ustring)


@dataclass(frozen=True)
class Txn:
    session: int
    zxid: int
    op: str
    paths: tuple[str, ...]  # the znodes it wrote (a multi's every part), "" when it has none
    size: int  # bytes of its log record (header, record, crc, length, end marker)


def _ustring(buf: bytes, off: int) -> str:
    (n,) = struct.unpack_from(">i", buf, off)
    return buf[off + 4: off + 4 + max(n, 0)].decode("utf-8", "replace")


def _parts(typ: int, body: bytes) -> list[tuple[str, str]]:
    """(op, path) of one txn record; a multi's sub-transactions each."""
    if typ == 14:
        (count,) = struct.unpack_from(">i", body, 0)
        off, out = 4, []
        for _ in range(count):
            sub, n = struct.unpack_from(">ii", body, off)
            out += _parts(sub, body[off + 8: off + 8 + n])
            off += 8 + n
        return out
    return [(OPS.get(typ, str(typ)), _ustring(body, 0) if typ in _PATH_OPS else "")]


def read_log(path: Path) -> Iterator[Txn]:
    """Every complete transaction in one log file (a record still being written ends it)."""
    data = path.read_bytes()
    if data[:4] != MAGIC:
        raise ValueError(f"{path}: not a ZooKeeper transaction log")
    off = 16
    while off + 12 <= len(data):
        _crc, n = struct.unpack_from(">qi", data, off)
        if n <= 0 or off + 12 + n + 1 > len(data):
            return
        rec = data[off + 12: off + 12 + n]
        session, _cxid, zxid, _time, typ = _HEADER.unpack_from(rec, 0)
        parts = _parts(typ, rec[_HEADER.size:])
        op = "multi" if typ == 14 else parts[0][0]
        yield Txn(session, zxid, op, tuple(p for _, p in parts), 12 + n + 1)
        off += 12 + n + 1


def transactions(data_dir: Path, after: int, upto: int) -> list[Txn]:
    """Transactions with after < zxid <= upto from the log files of one server's dataDir."""
    out = [t for f in sorted((data_dir / "version-2").glob("log.*")) for t in read_log(f) if after < t.zxid <= upto]
    return sorted(out, key=lambda t: t.zxid)
