"""The owner marker: `<spool>/.hacluster-owner`, the fencing token (lease term) and node of the
last holder that claimed the spool.

A lease keeps two holders apart in time; the marker catches what the lease cannot: a holder that
was frozen past its deadline and wakes up still "holding" a mounted spool, or a replication
request from a stale holder. Every writer checks it: a claim with a lower token than the marker's
is refused, and so is the same token from another node (terms are never reused, so that is a bug
or a forgery, not a holder).
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

MARKER_NAME = ".hacluster-owner"
LOCK_NAME = ".hacluster-owner.lock"


class StaleToken(Exception):
    """Our token is older than the spool's: someone newer holds (or held) it."""

    def __init__(self, ours: int, node: str, current: "Marker") -> None:
        self.ours, self.node, self.current = ours, node, current
        super().__init__(f"stale fencing token {ours} ({node}): the spool is owned by {current.node} "
                         f"with token {current.token}")


class MarkerError(Exception):
    """The marker exists but cannot be read or parsed (treated as a failure, never as 'free')."""


@dataclass(frozen=True)
class Marker:
    token: int
    node: str
    at: float = 0.0  # wall-clock time of the claim, for humans

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True) + "\n"


def verdict(current: Marker | None, token: int, node: str) -> str:
    """Pure decision for a writer with (token, node) facing `current`:
    "stale" (refuse), "same" (already ours, nothing to write) or "claim" (write ours)."""
    if current is None or token > current.token:
        return "claim"
    if token == current.token and node == current.node:
        return "same"
    return "stale"


def read_marker(root: Path) -> Marker | None:
    path = Path(root) / MARKER_NAME
    try:
        raw = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as err:
        raise MarkerError(f"{path}: {err.strerror}") from None
    try:
        data = json.loads(raw)
        return Marker(int(data["token"]), str(data["node"]), float(data.get("at", 0.0)))
    except (ValueError, KeyError, TypeError):
        raise MarkerError(f"{path}: not a marker: {raw[:80]!r}") from None


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes) -> None:
    """tmp in the same directory -> fsync -> rename -> fsync the directory: the file is either
    the old or the new content after a crash, never partial."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{time.monotonic_ns()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.rename(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


@contextmanager
def _locked(root: Path) -> Iterator[None]:
    """Serialise claims on one host (several mounts of one filesystem share the flock)."""
    fd = os.open(Path(root) / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def claim(root: Path, token: int, node: str | None = None) -> Marker:
    """Make (token, node) the spool's owner unless a newer one is recorded (raises StaleToken)."""
    node = node or socket.gethostname()
    with _locked(root):
        current = read_marker(root)
        v = verdict(current, token, node)
        if v == "stale":
            assert current is not None
            raise StaleToken(token, node, current)
        if v == "same":
            assert current is not None
            return current
        marker = Marker(int(token), node, round(time.time(), 3))
        write_atomic(Path(root) / MARKER_NAME, marker.to_json().encode())
        return marker


def check(root: Path, token: int, node: str) -> Marker | None:
    """For writers that do not claim: raise StaleToken if the marker is newer than (token, node)."""
    current = read_marker(root)
    if verdict(current, token, node) == "stale":
        assert current is not None
        raise StaleToken(token, node, current)
    return current


class MarkerCache:
    """check() for hot paths (one call per replicated message): re-reads the marker only when its
    inode/mtime changed, so the cost is one stat."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._sig: tuple[int, int, int] | None = None
        self._marker: Marker | None = None

    def current(self) -> Marker | None:
        try:
            st = os.stat(self.root / MARKER_NAME)
        except FileNotFoundError:
            self._sig, self._marker = None, None
            return None
        sig = (st.st_ino, st.st_mtime_ns, st.st_size)
        if sig != self._sig:
            self._marker, self._sig = read_marker(self.root), sig
        return self._marker

    def check(self, token: int, node: str) -> None:
        current = self.current()
        if verdict(current, token, node) == "stale":
            assert current is not None
            raise StaleToken(token, node, current)
