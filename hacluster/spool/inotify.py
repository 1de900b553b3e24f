"""Linux inotify through ctypes (no extra dependency): the sender uses it only as a wake-up with
names, and falls back to a bounded periodic scan when it is unavailable or overflows."""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import select
import struct
from typing import NamedTuple

IN_MODIFY = 0x002
IN_CLOSE_WRITE = 0x008
IN_MOVED_FROM = 0x040
IN_MOVED_TO = 0x080
IN_CREATE = 0x100
IN_DELETE = 0x200
IN_DELETE_SELF = 0x400
IN_IGNORED = 0x8000
IN_Q_OVERFLOW = 0x4000
IN_ISDIR = 0x40000000
IN_ONLYDIR = 0x01000000
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC

_EVENT = struct.Struct("iIII")


class Event(NamedTuple):
    wd: int
    mask: int
    cookie: int
    name: str


class Inotify:
    """An inotify fd. `read(timeout_s)` returns the events that arrived (possibly none)."""

    def __init__(self) -> None:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        self._add = libc.inotify_add_watch
        self._add.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        self.fd = libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if self.fd < 0:
            e = ctypes.get_errno()
            raise OSError(e, os.strerror(e))
        self.poll = select.poll()
        self.poll.register(self.fd, select.POLLIN)

    def add_watch(self, path: str, mask: int) -> int:
        wd = self._add(self.fd, os.fsencode(path), mask)
        if wd < 0:
            e = ctypes.get_errno()
            raise OSError(e, os.strerror(e), path)
        return wd

    def read(self, timeout_s: float) -> list[Event]:
        if not self.poll.poll(max(0, int(timeout_s * 1000))):
            return []
        try:
            buf = os.read(self.fd, 1 << 16)
        except OSError as err:
            if err.errno == errno.EAGAIN:
                return []
            raise
        out, i = [], 0
        while i + _EVENT.size <= len(buf):
            wd, mask, cookie, n = _EVENT.unpack_from(buf, i)
            name = buf[i + _EVENT.size:i + _EVENT.size + n].split(b"\0", 1)[0]
            out.append(Event(wd, mask, cookie, os.fsdecode(name)))
            i += _EVENT.size + n
        return out

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
