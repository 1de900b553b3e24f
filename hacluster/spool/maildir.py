"""Maildir trees as the replicator sees them: every message is a file `<maildir>/{new,cur}/<name>`
whose identity is its unique part (the name before the `:2,FLAGS` info), so a message that moves
from new/ to cur/ or changes flags stays the same message.

Writes follow the Maildir delivery rule (write under tmp/, fsync, then link into new/ or cur/ and
fsync the directory): a reader never sees a partial file, a crash leaves at most a tmp/ file, and
link() refuses to overwrite, so a message can never be stored twice under one name.
"""

from __future__ import annotations

import itertools
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from .marker import fsync_dir

SUBDIRS = ("new", "cur")
MAX_DEPTH = 8  # root/domain/user/Maildir/.Folder is 4; deeper trees are not mail
OWN_PREFIX = ".hacluster"  # our marker, lock and state files live next to the mail
_seq = itertools.count()


class BadPath(ValueError):
    """A message path from the wire that is not `<maildir>/{new,cur}/<name>` inside the root."""


def unique_of(filename: str) -> str:
    return filename.split(":", 1)[0]


@dataclass(frozen=True)
class MsgPath:
    """`maildir/sub/name` relative to the spool root, validated (safe to join to the root)."""

    maildir: str  # "" for a Maildir at the root itself
    sub: str
    name: str

    @property
    def rel(self) -> str:
        return "/".join(p for p in (self.maildir, self.sub, self.name) if p)

    @property
    def key(self) -> str:
        """Identity across moves and flag changes."""
        return "/".join(p for p in (self.maildir, unique_of(self.name)) if p)

    @classmethod
    def parse(cls, rel: str) -> "MsgPath":
        if not isinstance(rel, str) or not rel or rel.startswith("/") or "\0" in rel:
            raise BadPath(f"bad message path {rel!r}")
        parts = rel.split("/")
        if len(parts) < 2 or len(parts) > MAX_DEPTH + 2:
            raise BadPath(f"bad message path {rel!r}: expected MAILDIR/new|cur/NAME")
        *dirs, sub, name = parts
        if sub not in SUBDIRS:
            raise BadPath(f"bad message path {rel!r}: {sub!r} is not new or cur")
        for p in [*dirs, name]:
            if p in ("", ".", "..") or p.startswith(OWN_PREFIX):
                raise BadPath(f"bad message path {rel!r}: component {p!r}")
        if name.startswith(".") or len(name) > 255:
            raise BadPath(f"bad message name {name!r}")
        return cls("/".join(dirs), sub, name)


def is_maildir(d: Path) -> bool:
    return all((d / s).is_dir() for s in ("tmp", "new", "cur"))


def find_maildirs(root: Path) -> list[str]:
    """Relative paths of every Maildir under root (Maildir++ `.Folder`s included), bounded depth."""
    root = Path(root)
    out: list[str] = []
    base_depth = len(root.parts)
    for dirpath, dirnames, _files in os.walk(root):
        here = Path(dirpath)
        depth = len(here.parts) - base_depth
        if is_maildir(here):
            out.append("" if here == root else str(here.relative_to(root)))
            dirnames[:] = [d for d in dirnames if d not in ("tmp", "new", "cur")]
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(OWN_PREFIX)) if depth < MAX_DEPTH else []
    return out


def ensure_maildir(d: Path, uid: int | None = None, gid: int | None = None) -> None:
    made = False
    for sub in ("", "tmp", "new", "cur"):
        p = d / sub if sub else d
        if not p.is_dir():
            p.mkdir(mode=0o700, parents=True, exist_ok=True)
            made = True
            if uid is not None and gid is not None and os.geteuid() == 0:
                os.chown(p, uid, gid)
    if made:
        fsync_dir(d)
        fsync_dir(d.parent)


@dataclass(frozen=True)
class Meta:
    size: int
    mtime: float
    uid: int
    gid: int
    mode: int


class MaildirStore:
    """One spool root. Keeps a per-Maildir index {unique: (sub, name)} refreshed whenever the
    new/ or cur/ directory changed behind our back (mtime), so a dedup check costs two stats."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.lock = threading.Lock()
        self._index: dict[str, dict[str, tuple[str, str]]] = {}
        self._sig: dict[str, tuple[int, int]] = {}

    # ------------------------------------------------------------------ reading

    def path(self, m: MsgPath) -> Path:
        return self.root / m.rel

    def _dir_sig(self, md: str) -> tuple[int, int]:
        base = self.root / md
        try:
            return (os.stat(base / "new").st_mtime_ns, os.stat(base / "cur").st_mtime_ns)
        except FileNotFoundError:
            return (0, 0)

    def index(self, md: str, fresh: bool = False) -> dict[str, tuple[str, str]]:
        sig = self._dir_sig(md)
        if fresh or self._sig.get(md) != sig or md not in self._index:
            idx: dict[str, tuple[str, str]] = {}
            for sub in SUBDIRS:
                try:
                    names = os.listdir(self.root / md / sub)
                except FileNotFoundError:
                    continue
                for name in names:
                    if not name.startswith("."):
                        idx[unique_of(name)] = (sub, name)
            self._index[md], self._sig[md] = idx, sig
        return self._index[md]

    def find(self, m: MsgPath) -> MsgPath | None:
        """Where the message with m's identity is stored now (any sub, any flags)."""
        with self.lock:
            hit = self.index(m.maildir).get(unique_of(m.name))
        return MsgPath(m.maildir, *hit) if hit else None

    def _noted(self, md: str, unique: str, where: tuple[str, str] | None) -> None:
        """Record our own write in the index without a rescan. The signature is taken after the
        write, so a concurrent foreign write in the same instant may be missed by find(); that
        only matters for dedup (uniques never collide across writers) and link() still refuses
        duplicates. Listings (messages()) always read the directories afresh."""
        idx = self.index(md)
        if where is None:
            idx.pop(unique, None)
        else:
            idx[unique] = where
        self._sig[md] = self._dir_sig(md)

    def messages(self) -> dict[str, MsgPath]:
        """key -> location of every message in the tree (always a fresh listing)."""
        out: dict[str, MsgPath] = {}
        with self.lock:
            for md in find_maildirs(self.root):
                for _u, (sub, name) in self.index(md, fresh=True).items():
                    m = MsgPath(md, sub, name)
                    out[m.key] = m
        return out

    def maildir_messages(self, md: str) -> dict[str, MsgPath]:
        with self.lock:
            return {MsgPath(md, s, n).key: MsgPath(md, s, n) for s, n in self.index(md, fresh=True).values()}

    def read(self, m: MsgPath) -> tuple[Meta, bytes]:
        with open(self.path(m), "rb") as f:
            st = os.fstat(f.fileno())
            data = f.read()
        return Meta(len(data), st.st_mtime, st.st_uid, st.st_gid, st.st_mode & 0o7777), data

    # ------------------------------------------------------------------ writing

    def deliver(self, m: MsgPath, data: bytes, meta: Meta | None = None) -> str:
        """Store one message Maildir-safely. Returns "stored", "exists" (same identity already
        here, at the same place) or "moved" (already here, renamed to m's sub/flags)."""
        md = self.root / m.maildir if m.maildir else self.root
        existing = self.find(m)
        if existing is not None:
            return self.move(existing, m)
        ensure_maildir(md, meta.uid if meta else None, meta.gid if meta else None)
        tmp = md / "tmp" / f"{unique_of(m.name)}.{os.getpid()}_{next(_seq)}.repl"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                view = view[n:]
            if meta is not None:
                if os.geteuid() == 0:
                    os.fchown(fd, meta.uid, meta.gid)
                os.fchmod(fd, meta.mode & 0o7777)
            os.fsync(fd)
        finally:
            os.close(fd)
        if meta is not None:
            os.utime(tmp, (meta.mtime, meta.mtime))
        dest = md / m.sub / m.name
        try:
            os.link(tmp, dest)  # refuses to overwrite: the Maildir rule against double delivery
        except FileExistsError:
            tmp.unlink(missing_ok=True)
            return "exists"
        except OSError:
            tmp.unlink(missing_ok=True)
            raise
        tmp.unlink()
        fsync_dir(md / m.sub)
        with self.lock:
            self._noted(m.maildir, unique_of(m.name), (m.sub, m.name))
        return "stored"

    def move(self, src: MsgPath, dst: MsgPath) -> str:
        """Rename a stored message to dst's sub/name (new -> cur, flag change)."""
        if (src.sub, src.name) == (dst.sub, dst.name):
            return "exists"
        try:
            os.rename(self.path(src), self.path(dst))
        except FileNotFoundError:
            with self.lock:
                self._sig.pop(src.maildir, None)
            return "exists"  # moved meanwhile by someone else: the next scan sees where
        fsync_dir(self.path(dst).parent)
        if src.sub != dst.sub:
            fsync_dir(self.path(src).parent)
        with self.lock:
            self._noted(dst.maildir, unique_of(dst.name), (dst.sub, dst.name))
        return "moved"

    def remove(self, m: MsgPath) -> bool:
        cur = self.find(m)
        if cur is None:
            return False
        try:
            os.unlink(self.path(cur))
        except FileNotFoundError:
            return False
        fsync_dir(self.path(cur).parent)
        with self.lock:
            self._noted(m.maildir, unique_of(m.name), None)
        return True
