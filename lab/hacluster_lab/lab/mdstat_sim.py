"""The lab's simulated /proc/mdstat: one file per node whose tier has a `raid` check marked
`simulated: true` (this machine has no md driver, so the check reads a file the lab controls).

`hacluster lab up` writes HEALTHY there before the agents start; the host faults `raid-degraded`
and `raid-repair` switch the file between DEGRADED and HEALTHY, and the agent's raid check sees
the change on its next probe. DEGRADED is the real sample `raid1-degraded-faulty.mdstat` from
/work/shared/fixtures/mdstat/ (= tests/fixtures/mdstat/: md1 lost sdb3, `[2/1] [U_]`); HEALTHY is
the same two arrays with both members up, i.e. that machine before the disk failed. Only a path
under the node's own state directory is ever written: a spec pointing at /proc/mdstat (or
anywhere else) is never touched.
"""

from __future__ import annotations

from pathlib import Path

from hacluster.spec import ClusterSpec

DEGRADED = """\
Personalities : [raid1]
md0 : active raid1 sdb1[1] sda1[0]
      1023936 blocks super 1.0 [2/2] [UU]

md1 : active raid1 sdb3[2](F) sda3[0]
      1948488512 blocks super 1.0 [2/1] [U_]

unused devices: <none>
"""

HEALTHY = """\
Personalities : [raid1]
md0 : active raid1 sdb1[1] sda1[0]
      1023936 blocks super 1.0 [2/2] [UU]

md1 : active raid1 sdb3[1] sda3[0]
      1948488512 blocks super 1.0 [2/2] [UU]

unused devices: <none>
"""

#: fault name -> the sample it writes
FAULT_SAMPLES = {"raid-degraded": DEGRADED, "raid-repair": HEALTHY}


def simulated_path(spec: ClusterSpec, node: str, state_dir: Path) -> Path | None:
    """The file the node's simulated raid check reads, or None (not a mail node, no such check, or
    its file is not inside the node's state directory)."""
    if node not in spec.nodes:
        return None
    tier = spec.nodes[node].tier
    for cs in spec.health.get(tier, ()):
        if cs.check != "raid" or not cs.params.get("simulated"):
            continue
        raw = str(cs.params.get("mdstat", "/proc/mdstat"))
        path = Path(raw.replace("{state_dir}", str(state_dir)).replace("{node}", node)
                    .replace("{cluster}", spec.name)).resolve()
        base = state_dir.resolve()
        return path if path.is_relative_to(base) and path != base else None
    return None


def write(path: Path, text: str) -> None:
    """Replace the file atomically: a probe reads the old or the new sample, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)
