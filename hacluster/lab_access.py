"""How an operator command on the host reaches the embedded lab when no spec is configured.

The lab's ZooKeeper lives in its namespaces, which the host cannot reach (lab traffic stays
inside them). `hacluster lab up` (and `demo --keep`) records in its state dir's lab.json an
`operator` entry: the namespace that reaches ZooKeeper (the router) and the lab's spec. When an
operator command finds no spec by the rule (-c, $HACLUSTER_CONFIG, /etc/hacluster/cluster.yml)
and that lab is up, it joins the router's network namespace and uses the lab's spec, saying so
in one line. The product reads only this small documented record, nothing of the lab toolkit.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

NETNS_DIR = Path("/run/netns")


def lab_state_dir() -> Path:
    """Where `hacluster lab` keeps its default lab (the same variable the lab reads)."""
    return Path(os.environ.get("HACLUSTER_LAB_STATE", "/run/hacluster-lab"))


@dataclass(frozen=True)
class LabAccess:
    state_dir: Path
    netns: str  # a namespace from which the lab's ZooKeeper answers
    config: Path  # the lab's spec


def find_lab(state_dir: Path | None = None) -> LabAccess | None:
    """The default lab's way in, if it is up (its record says so, its namespace and spec exist)."""
    root = state_dir or lab_state_dir()
    try:
        rec = json.loads((root / "lab.json").read_text())
    except (OSError, ValueError):
        return None
    op = rec.get("operator") if isinstance(rec, dict) and rec.get("status") == "up" else None
    if not isinstance(op, dict) or not isinstance(op.get("netns"), str) or not isinstance(op.get("config"), str):
        return None
    access = LabAccess(root, op["netns"], Path(op["config"]))
    if "/" in access.netns or not (NETNS_DIR / access.netns).exists() or not access.config.is_file():
        return None
    return access


_host_ns_fd: int | None = None  # this thread's namespace before enter(): where `hacluster web` listens


def enter(access: LabAccess) -> None:
    """Move this process into the lab's namespace. Call before any thread starts: setns(2) moves
    the calling thread only, and threads started later (kazoo's) inherit it."""
    global _host_ns_fd
    from pyroute2.netns import setns

    fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        setns(access.netns, flags=0)  # flags=0: never create a namespace of that name
    except BaseException:
        os.close(fd)
        raise
    _host_ns_fd = fd


@contextmanager
def host_netns() -> Iterator[bool]:
    """Run the block in the host's network namespace again when enter() moved this thread into the
    lab's (yields True then), e.g. to bind a listening socket the host's browser can reach (a
    socket stays in the namespace it was made in); then back into the lab's."""
    if _host_ns_fd is None:
        yield False
        return
    from pyroute2.netns import setns

    lab_fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        setns(_host_ns_fd, flags=0)
        try:
            yield True
        finally:
            setns(lab_fd, flags=0)
    finally:
        os.close(lab_fd)


def record(netns: str, config: Path) -> dict[str, str]:
    """The `operator` entry the lab writes into its lab.json."""
    return {"netns": netns, "config": str(config)}
