"""The network-namespace lab (see docs/lab.md): `Lab` builds a cluster spec out of namespaces with
real Postfix, dnsmasq, ZooKeeper and agents, injects faults, and watches the VIP invariant."""

from .lab import Lab
from .state import LabOptions

__all__ = ["Lab", "LabOptions"]
