"""Parse Linux md RAID status: `/proc/mdstat` and `mdadm --detail` text -> `MdArray` snapshots.

Why our own parser: the health check must turn the kernel's text into one of a few states the
policy table acts on (a failed array demotes, a degraded one only lowers candidacy), and it must
fail loudly (`MdstatError` naming SOURCE:LINE) rather than misread an unfamiliar line.

States, worst first (the first that applies wins):
  inactive    the kernel line says `inactive` (mdadm: `State : inactive` / `Not Started`)
  failed      fewer working members than the level survives (raid1: none, raid4/5: n-2 or less,
              raid6: n-3 or less, raid10: a whole mirror set missing, raid0/linear: any `(F)`)
              or mdadm says `FAILED`
  reshaping   a reshape runs
  recovering  a replacement member is being rebuilt
  resyncing   a resync runs or waits (`resync=DELAYED` / `PENDING`, progress 0.0)
  checking    a scrub (`check`) runs; full redundancy
  degraded    members missing (`[n/m]` with m < n), nothing running
  clean       everything else

Counts follow prometheus/procfs (the source of the multi-array sample): raid0/linear have no
`[n/m]`, so total = active = listed members; an inactive array runs no personality, so its
total and active counts are 0. Member names drop `/dev/`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

STATES = ("clean", "degraded", "recovering", "resyncing", "checking", "reshaping", "failed", "inactive")
# Sync action printed by the kernel (md.c status_resync) -> our state.
_SYNC_STATE = {"recovery": "recovering", "resync": "resyncing", "check": "checking", "reshape": "reshaping"}
# Priority of the running action when several words appear in mdadm's State line.
_ACTION_ORDER = ("reshaping", "recovering", "resyncing", "checking")
# Personalities the kernel names on the array line (anything else there is a member device).
_LEVELS = ("linear", "multipath", "faulty", "raid0", "raid1", "raid4", "raid5", "raid6", "raid10")


class MdstatError(ValueError):
    """Malformed RAID status text; the message is `SOURCE:LINE: problem: 'the line'`."""


@dataclass(frozen=True)
class MdArray:
    """One md array as the health check and `hacluster raid status` see it."""

    name: str
    level: str | None  # "raid1", "linear", ...; None when no personality is loaded (inactive container)
    state: str  # one of STATES
    disks_total: int
    disks_active: int
    failed_devices: tuple[str, ...]
    spare_devices: tuple[str, ...]
    progress_pct: float | None  # None when no sync action runs or waits

    @property
    def clean(self) -> bool:
        return self.state == "clean"

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "level": self.level,
            "state": self.state,
            "disks_total": self.disks_total,
            "disks_active": self.disks_active,
            "failed_devices": list(self.failed_devices),
            "spare_devices": list(self.spare_devices),
            "progress_pct": self.progress_pct,
        }


def _err(source: str, lineno: int, problem: str, line: str) -> MdstatError:
    return MdstatError(f"{source}:{lineno}: {problem}: {line.strip()!r}")


def _strip_dev(name: str) -> str:
    return name[5:] if name.startswith("/dev/") else name


# --------------------------------------------------------------------------------------------
# /proc/mdstat
# --------------------------------------------------------------------------------------------

_ARRAY_RE = re.compile(r"^(md[\w.\-/]*)\s*:\s*(.*)$", re.ASCII)
_MEMBER_RE = re.compile(r"^([^\s\[\]()]+)\[(\d+)\]((?:\([A-Z]\))*)$", re.ASCII)
_BLOCKS_RE = re.compile(r"^(\d+) blocks\b", re.ASCII)
_DISKS_RE = re.compile(r"\[(\d+)/(\d+)\]\s+\[([U_]+)\]", re.ASCII)
_NEAR_RE = re.compile(r"\b(\d+) near-copies\b", re.ASCII)
_PROGRESS_RE = re.compile(
    r"^\[[=>.]*\]\s+(recovery|resync|check|reshape)\s*=\s*(\d+(?:\.\d+)?)%\s*\(\d+/\d+\)", re.ASCII
)
_WAITING_RE = re.compile(r"^(recovery|resync|check|reshape)\s*=\s*(DELAYED|PENDING|REMOTE)\b", re.ASCII)
_HEADER_PREFIXES = ("Personalities", "unused devices", "read_ahead", "Event:")


@dataclass
class _Block:
    """An array line and its indented continuation lines, with their line numbers."""

    lineno: int
    line: str
    body: list[tuple[int, str]]


def parse_mdstat(text: str, source: str = "/proc/mdstat") -> tuple[MdArray, ...]:
    """All arrays in /proc/mdstat text, in file order. Raises MdstatError on anything unexpected."""
    if not isinstance(text, str):
        raise MdstatError(f"{source}: expected text, got {type(text).__name__}")
    blocks: list[_Block] = []
    current: _Block | None = None
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.rstrip()
        if not line.strip():
            current = None  # a blank line ends an array's block
            continue
        if line[0].isspace():
            if current is None:
                raise _err(source, lineno, "indented line outside an array block", line)
            current.body.append((lineno, line.strip()))
            continue
        if line.startswith(_HEADER_PREFIXES):
            current = None
            continue
        if not _ARRAY_RE.match(line):
            raise _err(source, lineno, "expected 'mdN : active|inactive ...'", line)
        current = _Block(lineno, line, [])
        blocks.append(current)
    seen: set[str] = set()
    arrays = []
    for block in blocks:
        array = _parse_block(block, source)
        if array.name in seen:
            raise _err(source, block.lineno, f"array {array.name} listed twice", block.line)
        seen.add(array.name)
        arrays.append(array)
    return tuple(arrays)


def _parse_block(block: _Block, source: str) -> MdArray:
    m = _ARRAY_RE.match(block.line)
    assert m is not None  # checked by the caller
    name, rest = m.group(1), m.group(2).split()
    if not rest or rest[0] not in ("active", "inactive"):
        raise _err(source, block.lineno, "array state must be 'active' or 'inactive'", block.line)
    active = rest[0] == "active"
    i = 1
    while i < len(rest) and rest[i].startswith("(") and rest[i].endswith(")"):
        i += 1  # (read-only), (auto-read-only)
    level = None
    if i < len(rest) and rest[i] in _LEVELS:
        level = rest[i]
        i += 1
    members, failed, spares = [], [], []
    for token in rest[i:]:
        mm = _MEMBER_RE.match(token)
        if not mm:
            raise _err(source, block.lineno, f"bad member device {token!r}", block.line)
        dev, flags = mm.group(1), mm.group(3)
        members.append(dev)
        if "(F)" in flags:
            failed.append(dev)
        elif "(S)" in flags:
            spares.append(dev)
    if active and level is None:
        raise _err(source, block.lineno, "active array without a RAID level", block.line)
    if not block.body:
        if not active:  # an inactive array may be listed without a size line
            return MdArray(name, level, "inactive", 0, 0, tuple(failed), tuple(spares), None)
        raise _err(source, block.lineno, f"array {name} has no status line", block.line)
    status_no, status = block.body[0]
    if not _BLOCKS_RE.match(status):
        raise _err(source, status_no, f"expected '<N> blocks ...' for {name}", status)

    action, progress = None, None
    for lineno, line in block.body[1:]:
        if line.startswith("bitmap:"):
            continue
        pm, wm = _PROGRESS_RE.match(line), _WAITING_RE.match(line)
        if pm:
            action, progress = _SYNC_STATE[pm.group(1)], float(pm.group(2))
        elif wm:
            action, progress = _SYNC_STATE[wm.group(1)], 0.0
        else:
            raise _err(source, lineno, f"unrecognised status line for {name}", line)
        if not 0.0 <= progress <= 100.0:
            raise _err(source, lineno, "progress outside 0-100%", line)

    if not active:
        return MdArray(name, level, "inactive", 0, 0, tuple(failed), tuple(spares), None)

    dm = _DISKS_RE.search(status)
    if level in ("raid0", "linear"):
        total = working = len(members)
        slots = None
    elif dm:
        total, working, slots = int(dm.group(1)), int(dm.group(2)), dm.group(3)
        if working > total or len(slots) != total:
            raise _err(source, status_no, "inconsistent [total/working] [U_] counts", status)
    else:
        raise _err(source, status_no, f"{level} status line lacks '[n/m] [U_]'", status)

    near = _NEAR_RE.search(status)
    if _is_failed(level, total, working, slots, bool(failed), int(near.group(1)) if near else 2):
        state = "failed"
    elif action is not None:
        state = action
    elif working < total:
        state = "degraded"
    else:
        state = "clean"
    return MdArray(name, level, state, total, working, tuple(failed), tuple(spares), progress)


def _is_failed(level: str | None, total: int, working: int, slots: str | None, any_failed: bool, near: int) -> bool:
    """True when the array can no longer serve all its data (the kernel's `enough()`, simplified)."""
    if level in ("raid0", "linear"):
        return any_failed
    if total == 0:
        return False
    if level in ("raid1", "multipath"):
        return working == 0
    if level in ("raid4", "raid5"):
        return working < total - 1
    if level == "raid6":
        return working < total - 2
    if level == "raid10" and slots:
        # near layout: consecutive groups of `near` slots mirror each other; one survivor suffices
        copies = max(near, 1)
        return any("U" not in slots[k : k + copies] for k in range(0, len(slots), copies))
    return working == 0


# --------------------------------------------------------------------------------------------
# mdadm --detail
# --------------------------------------------------------------------------------------------

_DETAIL_HEAD_RE = re.compile(r"^((?:/dev/)?md\S*):$", re.ASCII)  # /dev/md0:, /dev/md/home:, md0:
_KV_RE = re.compile(r"^\s*([A-Za-z][A-Za-z' .]*?)\s+:\s?(.*)$", re.ASCII)
_TABLE_HEAD_RE = re.compile(r"^\s*Number\s+Major\s+Minor\s+RaidDevice(\s+State)?\s*$", re.ASCII)
_ROW_RE = re.compile(r"^\s*(\d+|-)\s+(\d+)\s+(\d+)\s+(\d+|-)\s*(.*)$", re.ASCII)
_STATUS_KEY_RE = re.compile(r"^(Rebuild|Resync|Reshape|Check) Status$", re.ASCII)
_PCT_RE = re.compile(r"^(\d+(?:\.\d+)?)% complete$", re.ASCII)


def parse_mdadm_detail(text: str, source: str = "mdadm --detail") -> tuple[MdArray, ...]:
    """Arrays in `mdadm --detail DEV...` output (one block per `/dev/mdX:` header line)."""
    if not isinstance(text, str):
        raise MdstatError(f"{source}: expected text, got {type(text).__name__}")
    arrays: list[MdArray] = []
    current: dict | None = None
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.rstrip()
        if not line.strip():
            continue
        head = _DETAIL_HEAD_RE.match(line)
        if head:
            if current is not None:
                arrays.append(_detail_array(current, source))
            current = {"name": _strip_dev(head.group(1)), "lineno": lineno, "line": line, "kv": {}, "rows": []}
            continue
        if current is None:
            raise _err(source, lineno, "expected an array header like '/dev/md0:'", line)
        if _TABLE_HEAD_RE.match(line):
            current["table"] = True
            continue
        row = _ROW_RE.match(line)
        if row and current.get("table"):
            current["rows"].append(row.group(5).split())
            continue
        kv = _KV_RE.match(line)
        if kv:
            current["kv"][kv.group(1).strip()] = (lineno, kv.group(2).strip(), line)
            continue
        raise _err(source, lineno, "unrecognised mdadm --detail line", line)
    if current is not None:
        arrays.append(_detail_array(current, source))
    if not arrays:
        raise MdstatError(f"{source}:1: no '/dev/mdX:' array header found")
    return tuple(arrays)


def _detail_int(block: dict, key: str, source: str, default: int | None = None) -> int:
    if key not in block["kv"]:
        if default is None:
            raise _err(source, block["lineno"], f"missing '{key} :' for {block['name']}", block["line"])
        return default
    lineno, value, line = block["kv"][key]
    if not (value.isascii() and value.isdigit()):
        raise _err(source, lineno, f"'{key}' is not a number", line)
    return int(value)


def _detail_array(block: dict, source: str) -> MdArray:
    name, kv = block["name"], block["kv"]
    level = kv.get("Raid Level", (0, "", ""))[1] or None
    if "State" not in kv:
        if level == "container":  # containers print no State line
            return MdArray(name, level, "inactive", 0, 0, (), (), None)
        raise _err(source, block["lineno"], f"missing 'State :' for {name}", block["line"])
    st_no, st_value, st_line = kv["State"]
    words = [w.strip() for w in st_value.replace("(", ",").replace(")", ",").split(",") if w.strip()]
    known = {"clean", "active", "degraded", "FAILED", "Not Started", "inactive", "DELAYED", "PENDING",
             "recovering", "resyncing", "reshaping", "checking"}
    unknown = [w for w in words if w not in known]
    if not words or unknown:
        raise _err(source, st_no, f"unknown array state {', '.join(unknown) or '(empty)'}", st_line)

    failed, spares = [], []
    for fields in block["rows"]:
        dev = _strip_dev(fields[-1]) if fields and fields[-1].startswith("/") else None
        flags = set(fields[:-1] if dev else fields)
        if dev is None:
            continue  # "removed" slot
        if "faulty" in flags:
            failed.append(dev)
        elif "spare" in flags and "rebuilding" not in flags:
            spares.append(dev)

    inactive = "inactive" in words or "Not Started" in words
    total = _detail_int(block, "Raid Devices", source, default=0 if inactive else None)
    working = _detail_int(block, "Active Devices", source, default=0 if inactive else None)
    if working > total:
        raise _err(source, kv["Active Devices"][0], "more active than raid devices", kv["Active Devices"][2])

    progress = None
    for key, (lineno, value, line) in kv.items():
        if _STATUS_KEY_RE.match(key):
            pm = _PCT_RE.match(value)
            if not pm or float(pm.group(1)) > 100:
                raise _err(source, lineno, "expected 'N% complete'", line)
            progress = float(pm.group(1))
    action = next((a for a in _ACTION_ORDER if a in words), None)

    if inactive:
        return MdArray(name, level, "inactive", 0, 0, tuple(failed), tuple(spares), None)
    if "FAILED" in words:
        state = "failed"
    elif action:
        state = action
        progress = 0.0 if progress is None else progress  # DELAYED / PENDING: waiting to start
    elif "degraded" in words or working < total:
        state = "degraded"
    else:
        state = "clean"
    return MdArray(name, level, state, total, working, tuple(failed), tuple(spares),
                   progress if action else None)


def merge(*sources: tuple[MdArray, ...]) -> tuple[MdArray, ...]:
    """Arrays from several sources by name; a later source replaces an earlier one (mdadm wins)."""
    by_name: dict[str, MdArray] = {}
    for arrays in sources:
        for array in arrays:
            by_name[array.name] = array
    return tuple(by_name.values())
