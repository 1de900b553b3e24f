"""What the VIP resource has put on this host, recorded where `hacluster vip cleanup` finds it.

The VIP resource writes `STATE_DIR/vips/ROLE.json` (interface, address, prefix of every VIP)
*before* adding the addresses and removes it *after* removing them. `vip cleanup` (systemd's
ExecStopPost) removes exactly the recorded addresses: it never reads the spec, so a spec edited
while the agent ran (another address, a typo) cannot make it remove the wrong address, or fail
and leave the live one. STATE_DIR is the agent's state directory (`--state-dir`,
$HACLUSTER_STATE_DIR, else /run/hacluster/NODE): one per agent, so agents sharing a host (the
lab) never touch each other's records.

Standard library only: cleanup runs after a crash and must not depend on much.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable

from .vip_guard import Target

RUN_DIR = "/run/hacluster"
SUBDIR = "vips"


def default_state_dir(node: str) -> str:
    return f"{RUN_DIR}/{node}"


class RecordError(ValueError):
    """A record that cannot be read back (names the file)."""


class VipRecord:
    """One role's record file."""

    def __init__(self, state_dir: str | Path, role: str, node: str, resource: str) -> None:
        self.path = Path(state_dir) / SUBDIR / f"{role}.json"
        self.role, self.node, self.resource = role, node, resource

    def write(self, targets: Iterable[Target]) -> None:
        """Atomically (rename), so cleanup sees the old record or the new one, never half of one."""
        body = {"node": self.node, "role": self.role, "resource": self.resource, "pid": os.getpid(),
                "addresses": [{"interface": t.ifname, "address": t.ip, "prefixlen": t.prefixlen} for t in targets]}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        tmp.write_text(json.dumps(body) + "\n")
        os.replace(tmp, self.path)

    def remove(self) -> None:
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass


def read_record(path: Path) -> list[Target]:
    """The targets of one record file; RecordError naming the file if it is not one of ours."""
    try:
        body = json.loads(path.read_text())
        targets = [Target.parse(f"{a['address']}/{a['prefixlen']}@{a['interface']}") for a in body["addresses"]]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise RecordError(f"{path}: not a VIP record: {err}") from None
    return targets


def record_files(state_dir: str | Path) -> list[Path]:
    """Every record in STATE_DIR/vips (none if the directory does not exist)."""
    d = Path(state_dir) / SUBDIR
    try:
        return sorted(p for p in d.iterdir() if p.suffix == ".json" and not p.name.startswith("."))
    except FileNotFoundError:
        return []
