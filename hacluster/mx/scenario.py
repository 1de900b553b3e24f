"""Delivery scenarios: one YAML file, loaded into frozen dataclasses.

A scenario names the domains and their MX records (or a cluster spec that provides them), the
hosts with their MTA retry policy and routing, the traffic, and the outages. The same file drives
the model (`hacluster mx simulate`) and the lab validation with real Postfix (`mx validate`); that is why
host names match the lab spec's node names and why `Scenario.scaled()` exists (the lab runs with
timers scaled down, and the model must be scaled the same way to be comparable).

Every problem is reported as `FILE:LINE: field: what is wrong`, all at once, never a traceback.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping

from ruamel.yaml.comments import CommentedMap, CommentedSeq

from ..errors import UserError
from ..units import parse_duration, parse_rate
from ..yamlread import ProblemsError, Reader, kind, load_yaml, read_text

MTAS = ("postfix", "sendmail")
ARRIVALS = ("even", "poisson")

#: Postfix defaults (postconf(5)); bare numbers in a scenario are always seconds.
POSTFIX_DEFAULTS = {
    "queue_run_delay": 300.0,
    "minimal_backoff_time": 300.0,
    "maximal_backoff_time": 4000.0,
    "maximal_queue_lifetime": 5 * 86400.0,
    "hopcount_limit": 50,
}
#: sendmail: `-q` interval (a command-line choice; 30m is common), Timeout.queuereturn default 5d.
SENDMAIL_DEFAULTS = {
    "queue_interval": 1800.0,
    "Timeout.queuereturn": 5 * 86400.0,
    "MaxHopCount": 25,
}
#: qmgr_active_feed() skips deferred files only when st_mtime > time() + 1: one second of slack.
POSTFIX_SCAN_SLACK_S = 1.0



# --------------------------------------------------------------------------- the objects


@dataclass(frozen=True)
class MxRecord:
    preference: int
    host: str  # "." is the null MX (RFC 7505)

    @property
    def is_null(self) -> bool:
        return self.host == "."


@dataclass(frozen=True)
class Domain:
    """A recipient domain. No MX records means implicit MX: the host named like the domain."""

    name: str
    mx: tuple[MxRecord, ...] = ()


@dataclass(frozen=True)
class Policy:
    """One MTA's retry behaviour, reduced to what decides when a deferred message is tried again.

    Postfix: after a failed attempt at time a the message is eligible again at
    a + clamp(a - create, min_backoff, max_backoff) and is picked up by the first deferred-queue
    scan (every queue_run_delay) at which it is eligible. sendmail: every queue run (-q interval)
    tries every queued message (min = max backoff = 0). Both bounce a message whose failed attempt
    happens at or after create + lifetime.
    """

    mta: str = "postfix"
    scan_interval_s: float = POSTFIX_DEFAULTS["queue_run_delay"]
    min_backoff_s: float = POSTFIX_DEFAULTS["minimal_backoff_time"]
    max_backoff_s: float = POSTFIX_DEFAULTS["maximal_backoff_time"]
    lifetime_s: float = POSTFIX_DEFAULTS["maximal_queue_lifetime"]
    scan_slack_s: float = POSTFIX_SCAN_SLACK_S
    fallback: tuple[str, ...] = ()  # smtp_fallback_relay / FallbackMXhost, tried in this order
    hop_limit: int = 50

    def scaled(self, factor: float) -> "Policy":
        return replace(
            self,
            scan_interval_s=self.scan_interval_s * factor,
            min_backoff_s=self.min_backoff_s * factor,
            max_backoff_s=self.max_backoff_s * factor,
            lifetime_s=self.lifetime_s * factor,
        )


@dataclass(frozen=True)
class Host:
    name: str
    route: str  # "mx" (MX lookup of the recipient domain), "local" (final destination), "relay"
    relay_to: str | None = None  # for route "relay": the static next hop, like relayhost = [host]
    policy: Policy = Policy()

    @property
    def final(self) -> bool:
        return self.route == "local"


@dataclass(frozen=True)
class Traffic:
    origin: str
    domain: str
    messages: int
    start_s: float
    end_s: float
    arrivals: str = "even"  # even: evenly spaced; poisson: uniform random times (exact count)


@dataclass(frozen=True)
class Outage:
    host: str
    start_s: float
    end_s: float  # may be math.inf: down until the end


@dataclass(frozen=True)
class Scenario:
    name: str
    duration_s: float
    domains: Mapping[str, Domain]
    hosts: Mapping[str, Host]
    traffic: tuple[Traffic, ...]
    outages: tuple[Outage, ...] = ()
    seed: int = 1
    description: str = ""
    source: str = "<memory>"
    scale: float = 1.0  # product of all scaled() factors applied so far
    extra: Mapping[str, Any] = field(default_factory=dict)  # unknown-to-the-model keys under `lab:`

    @property
    def messages(self) -> int:
        return sum(t.messages for t in self.traffic)

    def scaled(self, factor: float) -> "Scenario":
        """Every time in the scenario multiplied by `factor` (0.01: minutes become 0.6 s).

        Message counts stay; arrival rates grow by 1/factor. Postfix's 1 s scan slack is a fixed
        property of the real program and is deliberately *not* scaled.
        """
        if not factor > 0:
            raise UserError(f"scale factor must be > 0, got {factor}")
        return replace(
            self,
            duration_s=self.duration_s * factor,
            hosts={n: replace(h, policy=h.policy.scaled(factor)) for n, h in self.hosts.items()},
            traffic=tuple(replace(t, start_s=t.start_s * factor, end_s=t.end_s * factor) for t in self.traffic),
            outages=tuple(replace(o, start_s=o.start_s * factor, end_s=o.end_s * factor) for o in self.outages),
            scale=self.scale * factor,
        )

    def with_seed(self, seed: int) -> "Scenario":
        return replace(self, seed=seed)


# --------------------------------------------------------------------------- value parsing


# --------------------------------------------------------------------------- the reader


class ScenarioError(ProblemsError):
    """All problems of one scenario file; str() is one `FILE:LINE: field: message` per line."""


def _str(v: Any) -> str:
    if not isinstance(v, str) or not v:
        raise ValueError(f"must be a non-empty string, got {kind(v)} {v!r}")
    return v


def _int(lo: int, hi: int) -> Callable[[Any], int]:
    def conv(v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, int):
            raise ValueError(f"must be an integer, got {kind(v)} {v!r}")
        if not lo <= v <= hi:
            raise ValueError(f"must be {lo}..{hi}")
        return v
    return conv


def _positive_duration(v: Any) -> float:
    d = parse_duration(v)
    if d <= 0:
        raise ValueError("must be > 0")
    return d


def _host_list(v: Any) -> tuple[str, ...]:
    """smtp_fallback_relay style: a list, or a comma/space separated string; [host] brackets ok."""
    items = list(v) if isinstance(v, list) else re.split(r"[,\s]+", str(v).strip())
    out = []
    for item in items:
        item = _str(item).strip()
        if item.startswith("[") and item.endswith("]"):
            item = item[1:-1]
        if item:
            out.append(item)
    return tuple(out)


def _mx_record(v: Any) -> MxRecord:
    parts = str(v).split() if isinstance(v, str) else []
    if len(parts) != 2 or not parts[0].isdigit() or int(parts[0]) > 65535:
        raise ValueError(f'must be "PREFERENCE HOST" like "10 relay1" (null MX: "0 ."), got {v!r}')
    return MxRecord(int(parts[0]), parts[1].rstrip(".") or ".")


# --------------------------------------------------------------------------- sections

_TOP = {"name", "description", "duration", "seed", "domains", "spec", "hosts", "traffic", "outages", "lab"}
_POSTFIX_KEYS = {"queue_run_delay", "minimal_backoff_time", "maximal_backoff_time", "maximal_queue_lifetime",
                 "smtp_fallback_relay", "hopcount_limit"}
_SENDMAIL_KEYS = {"queue_interval", "Timeout.queuereturn", "FallbackMXhost", "MaxHopCount"}
_HOST_KEYS = {"mta", "route"}


def _read_domains(r: Reader, root: CommentedMap) -> dict[str, Domain]:
    node = root["domains"]
    m = r.mapping(node, "domains", None, r.line_of(root, "domains"))
    out: dict[str, Domain] = {}
    for name, body in (m or {}).items():
        path = f"domains.{name}"
        b = r.mapping(body, path, {"mx"}, r.line_of(m, name))
        if b is None:
            continue
        recs = b.get("mx", [])
        if recs is None:
            recs = []
        if not isinstance(recs, list):
            r.problem(r.line_of(b, "mx"), f"{path}.mx", f'must be a list of "PREFERENCE HOST" strings, got {kind(recs)}')
            continue
        mx: list[MxRecord] = []
        for i, rec in enumerate(recs):
            try:
                mx.append(_mx_record(rec))
            except ValueError as err:
                r.problem(r.line_of(recs, i), f"{path}.mx[{i}]", str(err))
        if any(x.is_null for x in mx) and len(mx) > 1:
            r.problem(r.line_of(b, "mx"), f"{path}.mx", "a null MX (\"0 .\") must be the only MX record (RFC 7505)")
        out[str(name).rstrip(".")] = Domain(str(name).rstrip("."), tuple(mx))
    return out


def _domains_from_spec(r: Reader, root: CommentedMap, base: Path) -> dict[str, Domain]:
    from ..spec import load_spec  # only scenarios that name a spec need it

    ref = root["spec"]
    line = r.line_of(root, "spec")
    if not isinstance(ref, str):
        r.problem(line, "spec", f"must be a path or 'default', got {kind(ref)}")
        return {}
    try:
        spec = load_spec(None if ref == "default" else base / ref)
    except UserError as err:
        r.problem(line, "spec", f"cannot use cluster spec {ref!r}: {err}")
        return {}
    mx = tuple(sorted((MxRecord(n.mx_preference, n.name) for n in spec.nodes.values() if n.mx_preference is not None),
                      key=lambda x: (x.preference, x.host)))
    return {spec.mail.domain: Domain(spec.mail.domain, mx)}


def _read_policy(r: Reader, b: CommentedMap, path: str, mta: str) -> Policy:
    if mta == "sendmail":
        q = r.value(b, "queue_interval", path, _positive_duration, default=SENDMAIL_DEFAULTS["queue_interval"])
        life = r.value(b, "Timeout.queuereturn", path, _positive_duration, default=SENDMAIL_DEFAULTS["Timeout.queuereturn"])
        fb = r.value(b, "FallbackMXhost", path, _host_list, default=())
        hops = r.value(b, "MaxHopCount", path, _int(1, 1000), default=SENDMAIL_DEFAULTS["MaxHopCount"])
        return Policy("sendmail", q, 0.0, 0.0, life, 0.0, fb, hops)
    q = r.value(b, "queue_run_delay", path, _positive_duration, default=POSTFIX_DEFAULTS["queue_run_delay"])
    lo = r.value(b, "minimal_backoff_time", path, _positive_duration, default=POSTFIX_DEFAULTS["minimal_backoff_time"])
    hi = r.value(b, "maximal_backoff_time", path, _positive_duration, default=POSTFIX_DEFAULTS["maximal_backoff_time"])
    life = r.value(b, "maximal_queue_lifetime", path, parse_duration, default=POSTFIX_DEFAULTS["maximal_queue_lifetime"])
    fb = r.value(b, "smtp_fallback_relay", path, _host_list, default=())
    hops = r.value(b, "hopcount_limit", path, _int(1, 1000), default=POSTFIX_DEFAULTS["hopcount_limit"])
    if hi < lo:
        r.problem(r.line_of(b, "maximal_backoff_time" if "maximal_backoff_time" in b else "minimal_backoff_time"),
                  f"{path}.maximal_backoff_time", f"must be >= minimal_backoff_time ({lo:g}s)")
    return Policy("postfix", q, lo, hi, life, POSTFIX_SCAN_SLACK_S, fb, hops)


def _read_hosts(r: Reader, root: CommentedMap) -> dict[str, Host]:
    m = r.mapping(root.get("hosts"), "hosts", None, r.line_of(root, "hosts"))
    out: dict[str, Host] = {}
    if m is None:
        return out
    if not m:
        r.problem(r.line_of(root, "hosts"), "hosts", "must name at least one host")
    for name, body in m.items():
        path = f"hosts.{name}"
        line = r.line_of(m, name)
        if body is None:
            body = CommentedMap()
        if not isinstance(body, CommentedMap):
            r.problem(line, path, f"must be a mapping, got {kind(body)}")
            continue
        mta = r.value(body, "mta", path, _str, default="postfix")
        if mta not in MTAS:
            r.problem(r.line_of(body, "mta"), f"{path}.mta", f"unknown MTA {mta!r} (known: {', '.join(MTAS)})")
            mta = "postfix"
        allowed = _HOST_KEYS | (_SENDMAIL_KEYS if mta == "sendmail" else _POSTFIX_KEYS)
        r.mapping(body, path, allowed, line)
        route_raw = r.value(body, "route", path, _str, default="mx")
        relay_to = None
        if route_raw in ("mx", "local"):
            route = route_raw
        elif re.fullmatch(r"\[[^\[\]\s]+\]", route_raw or ""):
            route, relay_to = "relay", route_raw[1:-1]
        else:
            r.problem(r.line_of(body, "route"), f"{path}.route", f'must be mx, local or "[HOST]" (static next hop), got {route_raw!r}')
            route = "mx"
        policy = _read_policy(r, body, path, mta)
        out[str(name)] = Host(str(name), route, relay_to, policy)
    return out


def _read_traffic(r: Reader, root: CommentedMap, duration: float) -> list[Traffic]:
    seq = root.get("traffic")
    out: list[Traffic] = []
    if not isinstance(seq, CommentedSeq) or not seq:
        r.problem(r.line_of(root, "traffic"), "traffic", "is required and must be a non-empty list")
        return out
    for i, body in enumerate(seq):
        path = f"traffic[{i}]"
        b = r.mapping(body, path, {"from", "to", "messages", "rate", "start", "end", "arrivals"}, r.line_of(seq, i))
        if b is None:
            continue
        origin = r.value(b, "from", path, _str, required=True)
        domain = r.value(b, "to", path, _str, required=True)
        start = r.value(b, "start", path, parse_duration, default=0.0)
        end = r.value(b, "end", path, parse_duration, default=duration)
        arrivals = r.value(b, "arrivals", path, _str, default="even")
        if arrivals not in ARRIVALS:
            r.problem(r.line_of(b, "arrivals"), f"{path}.arrivals", f"must be one of {', '.join(ARRIVALS)}")
        if end <= start:
            r.problem(r.line_of(b, "end" if "end" in b else "start"), f"{path}.end", f"must be after start ({start:g}s)")
        elif end > duration:
            r.problem(r.line_of(b, "end" if "end" in b else "start"), f"{path}.end", f"must be <= duration ({duration:g}s)")
        if ("messages" in b) == ("rate" in b):
            r.problem(r.line_of(b), path, "give exactly one of messages (a count) or rate (like 600/h)")
            continue
        if "messages" in b:
            n = r.value(b, "messages", path, _int(0, 10**9), default=0)
        else:
            rate = r.value(b, "rate", path, parse_rate, default=0.0)
            n = int(round(rate * max(0.0, end - start)))
        out.append(Traffic(origin or "", (domain or "").rstrip("."), n, start, end, arrivals))
    return out


def _read_outages(r: Reader, root: CommentedMap) -> list[Outage]:
    seq = root.get("outages") or []
    out: list[Outage] = []
    if not isinstance(seq, list):
        r.problem(r.line_of(root, "outages"), "outages", f"must be a list, got {kind(seq)}")
        return out
    for i, body in enumerate(seq):
        path = f"outages[{i}]"
        b = r.mapping(body, path, {"host", "from", "to"}, r.line_of(seq, i))
        if b is None:
            continue
        host = r.value(b, "host", path, _str, required=True)
        start = r.value(b, "from", path, parse_duration, required=True, default=0.0)
        end = r.value(b, "to", path, parse_duration, default=math.inf)
        if end <= start:
            r.problem(r.line_of(b, "to"), f"{path}.to", f"must be after from ({start:g}s)")
        out.append(Outage(host or "", start, end))
    return out


def _cross_checks(r: Reader, root: CommentedMap, domains: dict[str, Domain], hosts: dict[str, Host],
                  traffic: list[Traffic], outages: list[Outage], domains_ok: bool) -> None:
    """Names that must refer to something: MX targets, routes, fallbacks, traffic, outages."""
    dom_node = root.get("domains") if "domains" in root else None
    for d in domains.values():
        line = r.line_of(dom_node, d.name) if isinstance(dom_node, CommentedMap) else r.line_of(root, "spec")
        for rec in d.mx:
            if not rec.is_null and rec.host not in hosts:
                r.problem(line, f"domains.{d.name}.mx", f"MX target {rec.host!r} is not a host (hosts: {', '.join(hosts)})")
    hosts_node = root.get("hosts")
    for h in hosts.values():
        body = hosts_node.get(h.name) if isinstance(hosts_node, CommentedMap) else None
        line = r.line_of(body) if isinstance(body, CommentedMap) else r.line_of(hosts_node, h.name)
        if h.relay_to is not None:
            if h.relay_to not in hosts:
                r.problem(r.line_of(body, "route") if body else line, f"hosts.{h.name}.route", f"next hop {h.relay_to!r} is not a host")
            elif h.relay_to == h.name:
                r.problem(r.line_of(body, "route") if body else line, f"hosts.{h.name}.route", "a host cannot relay to itself")
        key = "FallbackMXhost" if h.policy.mta == "sendmail" else "smtp_fallback_relay"
        for fb in h.policy.fallback:
            if fb not in hosts:
                r.problem(r.line_of(body, key) if body else line, f"hosts.{h.name}.{key}", f"fallback {fb!r} is not a host")
    seq = root.get("traffic") or []
    for i, t in enumerate(traffic):
        b = seq[i] if i < len(seq) else None
        if t.origin and t.origin not in hosts:
            r.problem(r.line_of(b, "from"), f"traffic[{i}].from", f"{t.origin!r} is not a host")
        if t.domain and t.domain not in domains and t.domain not in hosts and domains_ok:
            r.problem(r.line_of(b, "to"), f"traffic[{i}].to", f"{t.domain!r} is neither a domain nor a host (implicit MX)")
    oseq = root.get("outages") or []
    for i, o in enumerate(outages):
        if o.host and o.host not in hosts:
            r.problem(r.line_of(oseq[i], "host") if i < len(oseq) else 1, f"outages[{i}].host", f"{o.host!r} is not a host")


def parse_scenario(text: str, source: str = "<memory>", base: Path | None = None) -> Scenario:
    """Parse and validate scenario text; raise ScenarioError listing every problem."""
    root = load_yaml(text, source, ScenarioError)
    if not isinstance(root, CommentedMap):
        raise ScenarioError([f"{source}:1: (top): must be a mapping with duration, domains, hosts, traffic"])
    r = Reader(source)
    r.mapping(root, "", _TOP, 1)
    name = r.value(root, "name", "", _str, default=Path(source).stem)
    description = r.value(root, "description", "", str, default="")
    duration = r.value(root, "duration", "", _positive_duration, required=True, default=86400.0)
    seed = r.value(root, "seed", "", _int(0, 2**63 - 1), default=1)
    problems_before = len(r.problems)
    if ("domains" in root) == ("spec" in root):
        r.problem(1, "domains", "give exactly one of domains (MX records) or spec (a cluster spec path, or 'default')")
        domains: dict[str, Domain] = {}
    elif "domains" in root:
        domains = _read_domains(r, root)
    else:
        domains = _domains_from_spec(r, root, base or Path(source).parent)
    domains_ok = len(r.problems) == problems_before  # else traffic.to errors would only echo it
    hosts = _read_hosts(r, root)
    traffic = _read_traffic(r, root, duration)
    outages = _read_outages(r, root)
    lab = root.get("lab") or CommentedMap()
    r.mapping(lab, "lab", None, r.line_of(root, "lab"))  # free-form for the lab runner, but a mapping
    _cross_checks(r, root, domains, hosts, traffic, outages, domains_ok)
    if r.problems:
        raise ScenarioError(r.render())
    return Scenario(name, duration, domains, hosts, tuple(traffic), tuple(outages), seed, description.strip(),
                    source, extra=_plain(lab))


def _plain(v: Any) -> Any:
    if isinstance(v, CommentedMap):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, CommentedSeq):
        return [_plain(x) for x in v]
    return v


def load_scenario(path: str | Path) -> Scenario:
    p = Path(path)
    return parse_scenario(read_text(p, ScenarioError), str(p), p.parent)


def example_scenarios() -> dict[str, Path]:
    """The shipped scenarios by name (hacluster/examples/scenarios/*.yml)."""
    from importlib import resources

    root = Path(str(resources.files("hacluster.examples").joinpath("scenarios")))
    return {p.stem: p for p in sorted(root.glob("*.yml"))}
