"""/proc/mdstat samples the raid step swaps in (the lab has no md driver; the store's raid check
reads a file named in the spec's `health:` section instead).

DEGRADED is `raid1-degraded-faulty.mdstat` from /work/shared/fixtures/mdstat/ (a sample quoted on
public admin pages: md1 lost sdb3, `[2/1] [U_]`). HEALTHY is the same two arrays with both
members up, i.e. what that machine showed before the disk failed.
"""

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

SAMPLES = {"degraded": DEGRADED, "healthy": HEALTHY}
