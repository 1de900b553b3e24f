"""The spool step's fill on a machine's ext4 spool (the VM lab's stores; run over SSH as root).

"Full" must mean the spool check's one-block write probe gets ENOSPC, or the holder only gets a
"nearly full" penalty and never demotes. Two ext4 details leave blocks a single fill does not take:
  - statfs's free count (%f) includes ext4's reserved clusters (s_resv_clusters, ~2 % of a small
    filesystem), which no regular allocation may use, so a fallocate of %f fails with ENOSPC;
  - a buffered write (the dd fallback) reserves delayed-allocation metadata that writeback gives
    back: after the fill ends ~100 KB are available again (measured on the 64 MB, 1 KB-block images).
So: fallocate what is available (%a), then, after syncing, append block-sized zeros (fsync'ed)
until a round takes no block at all (bounded rounds): then a one-block probe by the same user
(root) gets ENOSPC too, also where root may use a reserve (%f counts it). Everything goes into one file, FILL_NAME, so the free
step and the restore remove it with one `rm`.
"""

from __future__ import annotations

import shlex
from typing import Any

TOP_UP_ROUNDS = 50


def fill_script(path: str, fill_name: str) -> str:
    """A POSIX shell script that fills the filesystem at `path` and prints `available=BYTES rounds=N`."""
    p = shlex.quote(path)
    f = shlex.quote(f"{path}/{fill_name}")
    return (
        f"p={p}; f={f}\n"
        "fallocate -l $(( $(stat -f -c '%a*%S' \"$p\") )) \"$f\" 2>/dev/null || "
        "dd if=/dev/zero of=\"$f\" bs=1M conv=notrunc oflag=append 2>/dev/null\n"
        "sync -f \"$f\"; n=0\n"
        f"while [ $n -lt {TOP_UP_ROUNDS} ]; do\n"
        "  s=$(stat -c %s \"$f\")\n"
        "  dd if=/dev/zero of=\"$f\" bs=$(stat -f -c %S \"$p\") count=$(( $(stat -f -c %f \"$p\") + 1 )) "
        "conv=notrunc,fsync oflag=append 2>/dev/null\n"
        "  sync -f \"$f\"; n=$((n + 1))\n"
        "  [ \"$(stat -c %s \"$f\")\" -gt \"$s\" ] || break\n"
        "done\n"
        "echo available=$(( $(stat -f -c '%a*%S' \"$p\") )) rounds=$n\n"
    )


def fill_result(stdout: str) -> dict[str, Any]:
    """The script's last `key=value` line as numbers (empty when the script printed none)."""
    for line in reversed(stdout.strip().splitlines()):
        pairs = dict(kv.split("=", 1) for kv in line.split() if "=" in kv)
        if "available" in pairs:
            try:
                return {"free_bytes": int(pairs["available"]), "top_up_rounds": int(pairs.get("rounds", "0"))}
            except ValueError:
                return {}
    return {}
