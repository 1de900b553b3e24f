"""nft rulesets for the lab's network faults (pure text; `tc netem` does not work on this kernel).

* isolate: the host drops everything but loopback, ARP included (a pulled cable).
* partition A B: A drops traffic from/to B's addresses and frames from B's MAC, B likewise; the
  MAC rule also cuts traffic B sends from an address that isn't fixed (a VIP it holds).
Each fault has its own table, so `heal` deletes exactly what the lab added.
"""

from __future__ import annotations

from .topology import Host

ISOLATE_TABLES = (("inet", "hcl_isolate"), ("arp", "hcl_isolate"))
PARTITION_TABLES = (("inet", "hcl_partition"),)
ALL_TABLES = ISOLATE_TABLES + PARTITION_TABLES


def isolate_ruleset() -> str:
    return """\
table inet hcl_isolate {
  chain input { type filter hook input priority -200; policy accept; iif "lo" accept; drop; }
  chain output { type filter hook output priority -200; policy accept; oif "lo" accept; drop; }
}
table arp hcl_isolate {
  chain input { type filter hook input priority -200; policy drop; }
  chain output { type filter hook output priority -200; policy drop; }
}
"""


def drop_rules(other: Host) -> tuple[list[str], list[str]]:
    """(input, output) nft rules dropping what is exchanged with `other`: its addresses, and
    frames from its MAC (which also covers a VIP it holds on the same segment)."""
    v4 = [str(a.ip) for a in other.addresses if a.version == 4]
    v6 = [str(a.ip) for a in other.addresses if a.version == 6]
    rules_in = [f"ether saddr {other.mac} drop"]
    rules_out = []
    if v4:
        rules_in.append(f"ip saddr {{ {', '.join(v4)} }} drop")
        rules_out.append(f"ip daddr {{ {', '.join(v4)} }} drop")
    if v6:
        rules_in.append(f"ip6 saddr {{ {', '.join(v6)} }} drop")
        rules_out.append(f"ip6 daddr {{ {', '.join(v6)} }} drop")
    return rules_in, rules_out


def partition_ruleset(other: Host) -> str:
    """Rules for one side: drop everything exchanged with `other`."""
    rules_in, rules_out = drop_rules(other)
    lines = [
        "table inet hcl_partition {",
        "  chain input { type filter hook input priority -200; policy accept; }",
        "  chain output { type filter hook output priority -200; policy accept; }",
        "}",
    ]
    lines += [f"add rule inet hcl_partition input {r}" for r in rules_in]
    lines += [f"add rule inet hcl_partition output {r}" for r in rules_out]
    return "\n".join(lines) + "\n"


def present_tables(nft_list_output: str) -> set[tuple[str, str]]:
    """Parse `nft list tables` ("table inet hcl_isolate" per line)."""
    out = set()
    for line in nft_list_output.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "table":
            out.add((parts[1], parts[2]))
    return out


def delete_ruleset(present: set[tuple[str, str]]) -> str:
    return "".join(f"delete table {fam} {name}\n" for fam, name in ALL_TABLES if (fam, name) in present)
