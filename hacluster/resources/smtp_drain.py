"""The holder's SMTP drain (hacluster.graceful rules 21-22): refuse *new* connections to the role's
VIPs on port 25 with a TCP reset (the sender tries its next route at once), leave established
sessions alone, and count them from /proc/net/tcp{,6}.

One nftables table per role, `inet hacluster_drain_<role>`, matched on SYN without ACK (no
conntrack needed), so closing is one atomic `nft -f` and opening is deleting the table. The table
belongs to the node's network namespace: a leftover from a crashed agent is deleted at the next
agent's start (`open()`), and the VIP that it matches is gone with the role anyway.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import subprocess
from pathlib import Path
from typing import Sequence

from ..graceful import SMTP_PORT, established

log = logging.getLogger(__name__)


def table_name(role: str) -> str:
    return "hacluster_drain_" + re.sub(r"[^A-Za-z0-9_]", "_", role)


def close_rules(role: str, vips: Sequence[str], port: int = SMTP_PORT) -> str:
    """The nft script that refuses new connections to every VIP's port (pure)."""
    t = table_name(role)
    lines = [f"table inet {t} {{", "  chain input {", "    type filter hook input priority -5; policy accept;"]
    for ip in vips:
        fam = "ip6" if ipaddress.ip_address(ip).version == 6 else "ip"
        lines.append(f"    {fam} daddr {ip} tcp dport {port} tcp flags & (syn | ack) == syn reject with tcp reset")
    lines += ["  }", "}"]
    # delete-then-add in one transaction: closing twice leaves one set of rules
    return f"table inet {t}\ndelete table inet {t}\n" + "\n".join(lines) + "\n"


class SmtpDrain:
    """Close/open a role's VIPs to new SMTP connections; count established sessions."""

    def __init__(self, role: str, vips: Sequence[str], port: int = SMTP_PORT, wrap: Sequence[str] = ()) -> None:
        self.role = role
        self.vips = list(vips)
        self.port = port
        self.wrap = list(wrap)
        self.closed = False

    def _nft(self, script: str) -> bool:
        try:
            p = subprocess.run([*self.wrap, "nft", "-f", "-"], input=script, capture_output=True, text=True, timeout=5)
        except (OSError, subprocess.TimeoutExpired) as err:
            log.warning("smtp drain %s: nft: %s", self.role, err)
            return False
        if p.returncode != 0:
            log.warning("smtp drain %s: nft failed: %s", self.role, p.stderr.strip()[-300:])
        return p.returncode == 0

    def close(self) -> bool:
        """Refuse new connections (idempotent). False if nft failed: the stop then goes ahead as before."""
        if not self.closed:
            self.closed = self._nft(close_rules(self.role, self.vips, self.port))
        return self.closed

    def open(self) -> None:
        """Accept connections again (also removes a crashed agent's leftover table)."""
        t = table_name(self.role)
        self._nft(f"table inet {t}\ndelete table inet {t}\n")
        self.closed = False

    def in_flight(self, proc: Path = Path("/proc/net")) -> int:
        n = 0
        for ip in self.vips:
            name = "tcp6" if ipaddress.ip_address(ip).version == 6 else "tcp"
            try:
                n += established((proc / name).read_text(), ip, self.port)
            except OSError:
                continue
        return n
