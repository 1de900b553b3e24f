"""/proc/mdstat samples the raid step swaps in (the lab has no md driver; the store's raid check
reads a file named in the spec's `health:` section instead): the lab's own samples
(lab/mdstat_sim.py, the real `raid1-degraded-faulty.mdstat` and that machine before the disk
failed), by the names a playbook's `raid: {sample: ...}` step uses.
"""

from ..lab.mdstat_sim import DEGRADED, HEALTHY

SAMPLES = {"degraded": DEGRADED, "healthy": HEALTHY}
