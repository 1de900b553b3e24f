"""MX lint: the mistakes that make mail routing fail quietly, found in a zone file or a spec.

Each finding has a stable `code` (scripts match on it), a severity (error fails the lint), the
DNS owner name it is about, and a message that says why it matters. The zone is parsed by
dnspython so name handling ($ORIGIN, relative names, escapes) is RFC-correct.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable

import dns.exception
import dns.name
import dns.rdataclass
import dns.rdataset
import dns.rdatatype
import dns.zone

from ..errors import UserError

SEVERITIES = ("error", "warning", "info")

#: code -> (severity, what it means); docs/mx.md lists the same table.
CODES: dict[str, tuple[str, str]] = {
    "MX_TARGET_CNAME": ("error", "MX target is an alias (RFC 2181 §10.3: MX must point to a name with address records)"),
    "MX_TARGET_NO_ADDRESS": ("error", "MX target in this zone has no A/AAAA record"),
    "MX_TARGET_IP_LITERAL": ("error", "MX target is an IP address; MX data must be a host name (RFC 5321 §5.1)"),
    "NULL_MX_MIXED": ("error", "null MX together with other MX records (RFC 7505 §3: it must stand alone)"),
    "ZONE_SPEC_MISMATCH": ("error", "the zone's MX/address records differ from the cluster spec"),
    "WILDCARD_MX": ("warning", "wildcard MX: mail for any (mistyped) name is accepted and then bounced or queued"),
    "SINGLE_MX": ("warning", "a single MX: no redundancy, mail queues at the senders while it is down"),
    "MX_TARGET_OUT_OF_ZONE_NO_GLUE": ("warning", "the server answering MX cannot also give the target's address"),
    "NULL_MX_PREFERENCE": ("warning", "null MX with a preference other than 0 (RFC 7505 §3)"),
    "NO_MAIL_ROUTE": ("warning", "no MX and no address at the mail domain: mail to it bounces"),
    "RELAY_NOT_MX": ("warning", "a relay-tier node without mx_preference never receives mail from outside"),
    "MX_NOT_RELAY": ("warning", "a non-relay node is an MX: inbound mail bypasses the relay tier"),
    "EQUAL_PREFERENCE": ("info", "equal preferences: random choice (load spreading), not ordered failover"),
    "IMPLICIT_MX": ("info", "no MX: mail goes to the domain's own address records (implicit MX, RFC 5321 §5.1)"),
}

_ADDR = (dns.rdatatype.A, dns.rdatatype.AAAA)
_IN = dns.rdataclass.IN


@dataclass(frozen=True)
class Finding:
    severity: str
    code: str
    owner: str
    message: str

    def as_dict(self) -> dict:
        return asdict(self)

    def line(self) -> str:
        return f"{self.severity:<7} {self.code:<30} {self.owner}: {self.message}"


def _f(code: str, owner: dns.name.Name | str, message: str) -> Finding:
    return Finding(CODES[code][0], code, owner.to_text() if isinstance(owner, dns.name.Name) else owner, message)


def sort_findings(findings: Iterable[Finding]) -> list[Finding]:
    return sorted(set(findings), key=lambda f: (SEVERITIES.index(f.severity), f.owner, f.code, f.message))


def has_errors(findings: Iterable[Finding]) -> bool:
    return any(f.severity == "error" for f in findings)


# --------------------------------------------------------------------------- loading


def load_zone(path: str | Path, origin: str | None) -> dns.zone.Zone:
    """Parse a zone file; any problem becomes a UserError naming FILE[:LINE]."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as err:
        raise UserError(f"{p}: cannot read: {err.strerror}") from None
    return parse_zone(text, origin, str(p))


def parse_zone(text: str, origin: str | None, source: str = "<zone>") -> dns.zone.Zone:
    try:
        org = dns.name.from_text(origin) if origin else None
    except dns.exception.DNSException as err:
        raise UserError(f"--origin {origin!r}: not a domain name: {err}") from None
    try:
        zone = dns.zone.from_text(text, origin=org, relativize=False, check_origin=False, filename=source)
    except dns.exception.SyntaxError as err:
        msg = str(err)  # dnspython says "FILE:LINE: problem"
        m = re.match(re.escape(source) + r":(\d+): (.*)", msg, re.S)
        if not m:
            raise UserError(f"{source}: {msg}") from None
        raise UserError(f"{source}:{_error_line(text, org, int(m.group(1)))}: {m.group(2)}") from None
    except dns.zone.UnknownOrigin:
        raise UserError(f"{source}: no $ORIGIN in the file; give --origin DOMAIN") from None
    except dns.exception.DNSException as err:
        raise UserError(f"{source}: invalid zone: {err}") from None
    if zone.origin is None:  # a file without records names no origin either, and dnspython lets that pass
        raise UserError(f"{source}: no $ORIGIN in the file; give --origin DOMAIN")
    return zone


def _error_line(text: str, origin: dns.name.Name | None, reported: int) -> int:
    """dnspython reports the *next* line when it notices the error at a line's end (the
    newline is already consumed). If the text before the reported line fails on its own, the
    error is on the line before."""
    if reported < 2:
        return reported
    head = "".join(text.splitlines(keepends=True)[: reported - 1])
    try:
        dns.zone.from_text(head, origin=origin, relativize=False, check_origin=False)
    except dns.exception.DNSException:
        return reported - 1
    return reported


# --------------------------------------------------------------------------- zone checks


def _ip_literal(target: dns.name.Name, origin: dns.name.Name) -> str | None:
    """The address if `target` is an IP literal (absolute, or made relative by a missing dot)."""
    candidates = [target]
    if target.is_subdomain(origin) and target != origin:
        candidates.append(target.relativize(origin))
    for name in candidates:
        text = name.to_text(omit_final_dot=True).strip("[]")
        if text.lower().startswith("ipv6:"):
            text = text[5:]
        try:
            return str(ipaddress.ip_address(text))
        except ValueError:
            continue
    return None


def _delegation(zone: dns.zone.Zone, name: dns.name.Name) -> dns.name.Name | None:
    """The zone cut (NS below the origin) that `name` lies in or under, if any."""
    origin = _origin(zone)
    cur = name
    while cur != origin and cur.is_subdomain(origin):
        node = zone.get_node(cur)
        if node is not None and node.get_rdataset(_IN, dns.rdatatype.NS) is not None:
            return cur
        cur = cur.parent()
    return None


def _origin(zone: dns.zone.Zone) -> dns.name.Name:
    """The zone's origin: dnspython types it optional, but every zone read here is given one."""
    if zone.origin is None:
        raise ValueError("a zone without an origin")
    return zone.origin


def _rdatasets(zone: dns.zone.Zone, name: dns.name.Name) -> dict[int, dns.rdataset.Rdataset]:
    node = zone.get_node(name)
    if node is None and name != _origin(zone) and len(name) > 1:
        node = zone.get_node(dns.name.Name((b"*",) + name.parent().labels))  # wildcard answers it
    return {} if node is None else {rds.rdtype: rds for rds in node.rdatasets}


def lint_zone(zone: dns.zone.Zone) -> list[Finding]:
    """Every finding for the zone; the origin is the mail domain for IMPLICIT_MX/NO_MAIL_ROUTE."""
    origin = _origin(zone)
    out: list[Finding] = []
    has_mx_at_origin = False
    for owner, node in zone.nodes.items():
        mx = node.get_rdataset(_IN, dns.rdatatype.MX)
        if mx is None:
            continue
        has_mx_at_origin |= owner == origin
        records = sorted((r.preference, r.exchange) for r in mx)
        nulls = [(p, x) for p, x in records if x == dns.name.root]
        real = [(p, x) for p, x in records if x != dns.name.root]
        if nulls and real:
            out.append(_f("NULL_MX_MIXED", owner, f"null MX \"0 .\" next to {len(real)} other MX record(s): RFC 7505 §3 "
                          "says a null MX must be the only one; senders may ignore it and try the others"))
        for p, _ in nulls:
            if p != 0:
                out.append(_f("NULL_MX_PREFERENCE", owner, f"null MX with preference {p}; RFC 7505 §3 requires 0"))
        if owner.labels and owner.labels[0] == b"*":
            out.append(_f("WILDCARD_MX", owner, "wildcard MX: every name under "
                          f"{owner.parent().to_text()} (typos included) accepts mail, which then bounces late or queues"))
        if len(real) == 1 and not nulls:
            out.append(_f("SINGLE_MX", owner, f"only one MX ({real[0][1].to_text()}): no redundancy; while it is down "
                          "mail waits in the senders' queues under their retry policies"))
        by_pref: dict[int, list[str]] = {}
        for p, x in real:
            by_pref.setdefault(p, []).append(x.to_text())
        for p, xs in sorted(by_pref.items()):
            if len(xs) > 1:
                out.append(_f("EQUAL_PREFERENCE", owner, f"preference {p} shared by {', '.join(xs)}: senders pick at random "
                              "(load spreading), this is not ordered failover"))
        for p, target in real:
            out.extend(_lint_target(zone, owner, p, target))
    if not has_mx_at_origin:
        addr = _rdatasets(zone, origin)
        if any(t in addr for t in _ADDR):
            out.append(_f("IMPLICIT_MX", origin, "no MX at the mail domain: senders deliver to its A/AAAA records "
                          "(implicit MX, RFC 5321 §5.1); add MX records to control where mail goes"))
        else:
            out.append(_f("NO_MAIL_ROUTE", origin, "no MX and no A/AAAA at the mail domain: mail to it bounces "
                          "(publish a null MX \"0 .\" if that is intended)"))
    return sort_findings(out)


def _lint_target(zone: dns.zone.Zone, owner: dns.name.Name, pref: int, target: dns.name.Name) -> list[Finding]:
    origin = _origin(zone)
    literal = _ip_literal(target, origin)
    where = f"MX {pref} {target.to_text()}"
    if literal is not None:
        return [_f("MX_TARGET_IP_LITERAL", owner, f"{where}: {literal} is an address, not a host name; senders look it up "
                   "as a name (and fail) or refuse it (RFC 5321 §5.1)")]
    if not target.is_subdomain(origin):
        return [_f("MX_TARGET_OUT_OF_ZONE_NO_GLUE", owner, f"{where}: target is outside {origin.to_text()}, so the server "
                   "answering MX cannot return its address in the additional section unless it also serves "
                   f"{target.parent().to_text()}; one more lookup, and a broken other zone breaks mail")]
    cut = _delegation(zone, target)
    rdsets = _rdatasets(zone, target)
    if cut is not None:
        if not any(t in rdsets for t in _ADDR):
            return [_f("MX_TARGET_OUT_OF_ZONE_NO_GLUE", owner, f"{where}: target is in the delegated zone {cut.to_text()} "
                       "and this zone has no glue A/AAAA for it; the MX answer cannot carry its address")]
        return []
    if dns.rdatatype.CNAME in rdsets:
        alias = next(iter(rdsets[dns.rdatatype.CNAME])).target.to_text()
        return [_f("MX_TARGET_CNAME", owner, f"{where}: target is a CNAME (to {alias}); RFC 2181 §10.3 forbids MX "
                   "pointing to an alias, and some MTAs refuse or loop; point MX at the canonical name")]
    if not any(t in rdsets for t in _ADDR):
        return [_f("MX_TARGET_NO_ADDRESS", owner, f"{where}: target has no A or AAAA record in this zone; senders "
                   "skip it (and bounce if no other MX works)")]
    return []


# --------------------------------------------------------------------------- the cluster spec


def zone_fragment(spec) -> str:  # spec: hacluster.spec.ClusterSpec
    """The MX records and the MX targets' A/AAAA records for the spec's mail domain.

    Names are absolute so the fragment can be pasted anywhere in the zone (no $ORIGIN side
    effects) and no TTL is given (the zone's $TTL applies).
    """
    domain = spec.mail.domain.rstrip(".") + "."
    mx = sorted((n.mx_preference, n.name) for n in spec.nodes.values() if n.mx_preference is not None)
    lines = [f"; MX for {domain} from cluster spec {spec.source} (cluster {spec.name})",
             "; targets: nodes with mx_preference; addresses: their fixed addresses"]
    width = max([len(domain)] + [len(f"{n}.{domain}") for _, n in mx])
    for pref, name in mx:
        lines.append(f"{domain:<{width}} IN MX   {pref} {name}.{domain}")
    for _, name in mx:
        for addr in spec.nodes[name].addresses:
            rtype = "A   " if addr.version == 4 else "AAAA"
            lines.append(f"{name + '.' + domain:<{width}} IN {rtype} {addr.ip}")
    return "\n".join(lines) + "\n"


def spec_zone(spec) -> dns.zone.Zone:
    return parse_zone("$TTL 3600\n" + zone_fragment(spec), spec.mail.domain, f"{spec.source} (mx zone)")


def lint_spec(spec) -> list[Finding]:
    """Lint the zone the spec implies, plus the spec's own mail-routing choices."""
    out = list(lint_zone(spec_zone(spec)))
    domain = spec.mail.domain.rstrip(".") + "."
    for node in spec.nodes.values():
        fqdn = f"{node.name}.{domain}"
        if node.tier == "relay" and node.mx_preference is None:
            out.append(_f("RELAY_NOT_MX", fqdn, f"relay node {node.name} has no mx_preference: no MX record points to it, "
                          "so it only ever relays outbound mail"))
        if node.tier != "relay" and node.mx_preference is not None:
            out.append(_f("MX_NOT_RELAY", fqdn, f"{node.tier} node {node.name} has mx_preference {node.mx_preference}: "
                          "inbound mail reaches it directly, bypassing the relay tier"))
    return sort_findings(out)


def compare_zone_spec(zone: dns.zone.Zone, spec) -> list[Finding]:
    """ZONE_SPEC_MISMATCH findings: the published zone must carry what the spec says."""
    want = spec_zone(spec)
    domain = dns.name.from_text(spec.mail.domain)
    out: list[Finding] = []

    def records(z: dns.zone.Zone, name: dns.name.Name, rtype: dns.rdatatype.RdataType) -> set[str]:
        node = z.get_node(name)
        rds = node.get_rdataset(_IN, rtype) if node is not None else None
        return {r.to_text() for r in rds} if rds is not None else set()

    if not domain.is_subdomain(_origin(zone)):
        return [_f("ZONE_SPEC_MISMATCH", domain, f"the spec's mail domain is outside the zone {_origin(zone).to_text()}")]
    have_mx, want_mx = records(zone, domain, dns.rdatatype.MX), records(want, domain, dns.rdatatype.MX)
    if have_mx != want_mx:
        missing, extra = sorted(want_mx - have_mx), sorted(have_mx - want_mx)
        parts = ([f"missing MX {', '.join(missing)}"] if missing else []) + ([f"unexpected MX {', '.join(extra)}"] if extra else [])
        out.append(_f("ZONE_SPEC_MISMATCH", domain, "; ".join(parts) + f" (spec {spec.source})"))
    for name in sorted(n for n in want.nodes if n != domain):
        for rtype in _ADDR:
            w, h = records(want, name, rtype), records(zone, name, rtype)
            if w - h:
                out.append(_f("ZONE_SPEC_MISMATCH", name, f"{dns.rdatatype.to_text(rtype)} {', '.join(sorted(w - h))} is in the "
                              f"spec but not in the zone (zone has: {', '.join(sorted(h)) or 'none'})"))
    return sort_findings(out)
