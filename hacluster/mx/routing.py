"""Which hosts an MTA tries, in which order: RFC 5321 §5.1 plus the MTAs' fallback rules.

A `Plan` is computed once per (sending host, recipient domain) because DNS does not change
during a scenario; what changes per attempt is only the random order among equal preferences
(Postfix shuffles on every delivery attempt, smtp_randomize_addresses=yes) and which hosts are up.

Rules, with their sources:
* MX records sorted by preference; equal preferences in random order (RFC 5321 §5.1).
* No MX records: implicit MX, the domain itself with preference 0, if it has an address (§5.1).
* Neither MX nor address: the destination is not found. Postfix and sendmail >= 8.10 then use
  the fallback relay; without one the message bounces.
* Null MX "0 ." (RFC 7505): bounce at once, no fallback.
* A host that finds itself in the MX list drops itself and every MX at an equal or larger
  preference (only more-preferred hosts remain, §5.1). If nothing remains, "mail for D loops back
  to myself": a bounce (Postfix dsn 5.4.6, sendmail EX_CONFIG).
* Fallback relays (Postfix smtp_fallback_relay, sendmail FallbackMXhost) are tried after all MX
  hosts, in the configured order, but never for a destination the host is itself MX for (both
  MTAs, to prevent MX/fallback loops) and never the host itself.
* sendmail orders equal preferences by mxrand(host): random per sendmail instance but the same
  on every attempt, so here the order is drawn once per (sender, MX host) from the seed.
* A static route ("[store]", like relayhost/mailertable) does no MX lookup; the fallback applies.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from .rng import draw
from .scenario import Host, Scenario


@dataclass(frozen=True)
class Plan:
    """Candidate hosts for one (sender, domain): groups tried in order; a group's members are
    equal-preference MX hosts, shuffled per attempt when `shuffle` (Postfix) is set."""

    groups: tuple[tuple[str, ...], ...] = ()
    bounce: str | None = None  # a permanent failure: every attempt bounces at once
    shuffle: bool = False


def name_key(name: str) -> int:
    """A stable integer for a host name (Python's hash() is salted per process)."""
    return zlib.crc32(name.encode())


def plan_for(scn: Scenario, host: Host, domain: str) -> Plan:
    """The delivery plan of `host` for mail to `domain` (host.route must not be "local")."""
    fallback = tuple(f for f in dict.fromkeys(host.policy.fallback) if f != host.name)
    if host.route == "relay":
        assert host.relay_to is not None
        return Plan(((host.relay_to,),) + tuple((f,) for f in fallback if f != host.relay_to))
    dom = scn.domains.get(domain)
    records = dom.mx if dom is not None else ()
    if any(r.is_null for r in records):
        return Plan(bounce=f"{domain} does not accept mail (null MX, RFC 7505)")
    if not records:
        if domain in scn.hosts:  # implicit MX: the domain name has an address
            records_pref = [(0, domain)]
        elif fallback:
            return Plan(tuple((f,) for f in fallback))
        else:
            return Plan(bounce=f"{domain}: host or domain name not found (no MX, no address)")
    else:
        records_pref = [(r.preference, r.host) for r in records]
    mine = [p for p, h in records_pref if h == host.name]
    if mine:
        limit = min(mine)
        records_pref = [(p, h) for p, h in records_pref if p < limit]
        fallback = ()  # never fall back for a destination we are MX host for
        if not records_pref:
            return Plan(bounce=f"mail for {domain} loops back to myself")
    by_pref: dict[int, list[str]] = {}
    for p, h in sorted(records_pref):
        if h not in by_pref.setdefault(p, []):
            by_pref[p].append(h)
    mx_hosts = {h for _, h in records_pref}
    tail = tuple((f,) for f in fallback if f not in mx_hosts)
    if host.policy.mta == "sendmail":
        # mxrand(): a fixed pseudo-random order per sending instance, not per attempt
        groups: list[tuple[str, ...]] = []
        for p in sorted(by_pref):
            hs = sorted(by_pref[p], key=lambda h: (draw(scn.seed, name_key(host.name), name_key(h), 0, 0, 0), h))
            groups.extend((h,) for h in hs)
        return Plan(tuple(groups) + tail)
    return Plan(tuple(tuple(by_pref[p]) for p in sorted(by_pref)) + tail, shuffle=True)


def permute(group: tuple[str, ...], seed: int, msg: int, hop: int, attempt: int, gi: int) -> list[str]:
    """Fisher-Yates shuffle of an equal-preference group, keyed by the message and attempt.

    Counter-based randomness (a hash of the key, not a shared generator) makes the order a pure
    function of (message, hop, attempt), so the reference DES and the fast engine agree exactly
    whatever order they process messages in.
    """
    out = list(group)
    for i in range(len(out) - 1, 0, -1):
        j = draw(seed, msg, hop, attempt, gi, i) % (i + 1)
        out[i], out[j] = out[j], out[i]
    return out
