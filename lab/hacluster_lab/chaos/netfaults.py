"""Network faults with one nft table per fault, so overlapping faults heal one at a time.

The lab's own `partition`/`heal` share one table per namespace and heal everything at once;
chaos needs "partition relay1|zk2 ends while isolate of store1 goes on", so each fault here gets
its own table (`hcx_f<id>`) in the namespaces it touches, and `uncut` deletes just that table.
A flapping link is the same table added and deleted every half-period (nft drops look like a
pulled cable without carrier loss: the host keeps its addresses and its VIP, as in a switch fault).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lab import netns
from ..lab.netns import in_ns, run
from ..lab.nftrules import drop_rules
from ..lab.topology import Host

if TYPE_CHECKING:
    from ..lab.lab import Lab

TABLE_PREFIX = "hcx_"


def _fresh(family: str, table: str) -> str:
    """Idempotent re-creation: `add` never fails, so the `delete` after it never fails either."""
    return f"add table {family} {table}\ndelete table {family} {table}\n"


def isolate_ruleset(table: str) -> str:
    return (_fresh("inet", table) + _fresh("arp", table) + f"""\
table inet {table} {{
  chain input {{ type filter hook input priority -210; policy accept; iif "lo" accept; drop; }}
  chain output {{ type filter hook output priority -210; policy accept; oif "lo" accept; drop; }}
}}
table arp {table} {{
  chain input {{ type filter hook input priority -210; policy drop; }}
  chain output {{ type filter hook output priority -210; policy drop; }}
}}
""")


def partition_ruleset(table: str, other: Host) -> str:
    """One side of a partition: drop what is exchanged with `other` (its addresses, and frames
    from its MAC, which also covers a VIP it holds on the same segment)."""
    rin, rout = drop_rules(other)
    body = "\n".join([f"    {r};" for r in rin])
    bout = "\n".join([f"    {r};" for r in rout])
    return _fresh("inet", table) + f"""\
table inet {table} {{
  chain input {{ type filter hook input priority -210; policy accept;
{body}
  }}
  chain output {{ type filter hook output priority -210; policy accept;
{bout}
  }}
}}
"""


def _nft(lab: "Lab", host: str, script: str) -> None:
    run(in_ns(lab.ns(host), ["nft", "-f", "-"]), input=script)


def cut(lab: "Lab", table: str, node: str, peer: str | None = None) -> None:
    """Isolate `node` (peer None) or partition node|peer, in table `table`."""
    if peer is None:
        _nft(lab, node, isolate_ruleset(table))
        return
    a, b = lab.plan.host(node), lab.plan.host(peer)
    _nft(lab, node, partition_ruleset(table, b))
    _nft(lab, peer, partition_ruleset(table, a))


def uncut(lab: "Lab", table: str, node: str, peer: str | None = None) -> None:
    for host in (node, peer):
        if host is None:
            continue
        _nft(lab, host, "".join(_fresh(fam, table) for fam in ("inet", "arp")))


def tables(lab: "Lab", host: str) -> list[tuple[str, str]]:
    """(family, name) of this module's tables in the host's namespace."""
    out = run(in_ns(lab.ns(host), ["nft", "list", "tables"]), check=False).stdout
    found = []
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "table" and parts[2].startswith(TABLE_PREFIX):
            found.append((parts[1], parts[2]))
    return found


def heal_all(lab: "Lab") -> list[str]:
    """Delete every chaos table in every lab namespace; the hosts that had some."""
    healed = []
    for h in lab.plan.hosts:
        if not netns.exists(lab.ns(h.name)):
            continue
        present = tables(lab, h.name)
        if present:
            _nft(lab, h.name, "".join(f"delete table {fam} {name}\n" for fam, name in present))
            healed.append(h.name)
    return healed
