"""How a scenario becomes a lab run: which lab host plays which scenario host, the Postfix
parameters each instance gets, the fault schedule, the submission streams, and the model
scenario with *exactly* the timers the lab runs (pure: nothing here touches the system).

Postfix time parameters are whole seconds (>= 1 s for the scan interval and backoffs), so a
scaled timer is rounded to whole seconds and the model gets the rounded value too: both sides
run the same numbers, and the rounding is reported (`lab_params`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

from hacluster.errors import UserError
from hacluster.mx.model import Timeline
from hacluster.mx.scenario import Policy, Scenario

#: scenario host -> lab host. `sender` is the client namespace's Postfix (it queues and retries
#: like any sending MTA); `store` is the store role's VIP, held by store1 during a validation.
LAB_HOSTS = {"sender": "client", "relay1": "relay1", "relay2": "relay2", "fallback": "fallback", "store": "store1"}
POSTFIX_HOSTS = ("sender", "relay1", "relay2", "fallback")  # the store's timers play no part
OUTAGE_HOSTS = ("relay1", "relay2", "fallback", "store")
DEFAULT_SCALE = Fraction(1, 300)  # Postfix's 300 s timers become 1 s, an hour becomes 12 s
MAX_RATE_PER_S = 20.0  # one sender connection per stream; faster would skew arrival times
LAB_KEYS = {"scale", "outage"}
#: how a relay or the fallback is taken down (the store outage always takes its VIP away):
#: freeze -- every process of the host SIGSTOPped (no accepting, no queue runs), SIGCONT at the
#:           end: instant both ways, and the queue manager's overdue scan runs at once, as the
#:           model's does when a host returns;
#: power-off -- the lab's power-off/power-on; the boot (0.3-6 s here) starts `lead` early
OUTAGE_MODES = ("freeze", "power-off")
#: the envelope sender the client rewrites every test message to, so bounces (NDRs) reach a
#: Maildir in the store (the load generator's own sender domain has no reachable MX)
BOUNCE_TO = "alice"


@dataclass(frozen=True)
class Stream:
    """One traffic stream as the lab submits it: `count` messages, the first at `first_s` after
    t0, then one every `step_s` (the model's `even` arrivals: mid-slot)."""

    index: int
    count: int
    first_s: float
    step_s: float

    def planned(self, i: int) -> float:
        return self.first_s + i * self.step_s


@dataclass(frozen=True)
class FaultStep:
    at_s: float  # lab seconds after t0
    host: str  # scenario host
    action: str  # "down" | "up"


@dataclass(frozen=True)
class LabPlanRun:
    scenario: Scenario  # the scaled model scenario with the lab's rounded timers
    scale: float
    params: dict[str, dict[str, str]]  # lab host -> postconf name -> value
    streams: tuple[Stream, ...]
    faults: tuple[FaultStep, ...]
    duration_s: float  # lab seconds
    outage: str = "freeze"  # OUTAGE_MODES
    master: dict[str, dict[str, str]] = field(default_factory=dict)  # lab host -> postconf -F field -> value


def parse_scale(value: Any) -> Fraction:
    """1/300, "1/300", 0.0033...: a positive factor <= 1 (times shrink)."""
    if isinstance(value, bool):
        raise ValueError("must be a factor like 1/300 or 0.01")
    try:
        f = Fraction(str(value).strip()) if not isinstance(value, float) else Fraction(value).limit_denominator(100000)
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"must be a factor like 1/300 or 0.01, got {value!r}") from None
    if not 0 < f <= 1:
        raise ValueError(f"must be > 0 and <= 1, got {value!r}")
    return f


def _line_of(source: str, needle: str) -> int:
    try:
        for i, line in enumerate(Path(source).read_text().splitlines(), start=1):
            if re.match(rf"\s*{re.escape(needle)}\s*:", line) or f"{needle}:" in line:
                return i
    except OSError:
        pass
    return 1


def whole_seconds(v: float, minimum: int) -> int:
    """Postfix time values are integers; round half up, never below `minimum`."""
    return max(minimum, int(math.floor(v + 0.5)))


def lab_policy(p: Policy, scale: Fraction) -> Policy:
    """The scaled policy as the lab's Postfix runs it (whole seconds)."""
    s = float(scale)
    return replace(p,
                   scan_interval_s=float(whole_seconds(p.scan_interval_s * s, 1)),
                   min_backoff_s=float(whole_seconds(p.min_backoff_s * s, 1)),
                   max_backoff_s=float(whole_seconds(p.max_backoff_s * s, 1)),
                   lifetime_s=float(whole_seconds(p.lifetime_s * s, 0)))


def shape_problems(scn: Scenario, lab_domain: str, lab_mx: list[tuple[int, str]]) -> list[str]:
    """Why the lab cannot run `scn` (FILE:LINE: field: message each), empty if it can."""
    src = scn.source
    out: list[str] = []

    def bad(needle: str, fld: str, msg: str) -> None:
        out.append(f"{src}:{_line_of(src, needle)}: {fld}: {msg}")

    if set(scn.hosts) != set(LAB_HOSTS):
        bad("hosts", "hosts", f"the lab runs exactly {', '.join(LAB_HOSTS)}; got {', '.join(scn.hosts)}")
        return out
    if set(scn.domains) != {lab_domain}:
        bad("domains", "domains", f"the lab's DNS serves one mail domain, {lab_domain}; got {', '.join(scn.domains) or 'none'}")
    else:
        mx = sorted((r.preference, r.host) for r in scn.domains[lab_domain].mx)
        if mx != sorted(lab_mx):
            want = ", ".join(f'"{p} {h}"' for p, h in sorted(lab_mx))
            bad("mx", f"domains.{lab_domain}.mx", f"must match the lab's DNS: [{want}]")
    for name, h in scn.hosts.items():
        if h.policy.mta != "postfix":
            bad(name, f"hosts.{name}.mta", "the lab runs Postfix everywhere")
    want_route = {"sender": ("mx", None), "relay1": ("relay", "store"), "relay2": ("relay", "store"),
                  "fallback": ("relay", "store"), "store": ("local", None)}
    for name, (route, to) in want_route.items():
        h = scn.hosts[name]
        if (h.route, h.relay_to) != (route, to):
            shown = {"mx": "mx", "local": "local"}.get(route, f'"[{to}]"')
            bad(name, f"hosts.{name}.route", f"must be {shown} in the lab (its Postfix is configured so)")
    for name in ("sender", "fallback", "store"):
        if scn.hosts[name].policy.fallback:
            bad(name, f"hosts.{name}.smtp_fallback_relay", "only the relays may have a fallback relay in the lab")
    for name in ("relay1", "relay2"):
        if set(scn.hosts[name].policy.fallback) - {"fallback"}:
            bad(name, f"hosts.{name}.smtp_fallback_relay", "the lab's only fallback host is `fallback`")
    for i, t in enumerate(scn.traffic):
        if t.origin != "sender" or t.domain != lab_domain:
            bad("traffic", f"traffic[{i}]", f"the lab submits from sender to {lab_domain} only")
        if t.arrivals != "even":
            bad("arrivals", f"traffic[{i}].arrivals", "the lab paces submissions evenly: use arrivals: even")
    for i, o in enumerate(scn.outages):
        if o.host not in OUTAGE_HOSTS:
            bad("outages", f"outages[{i}].host", f"the lab can take down {', '.join(OUTAGE_HOSTS)} (not the sender)")
    if scn.extra.get("outage", "freeze") not in OUTAGE_MODES:
        bad("outage", "lab.outage", f"must be one of {', '.join(OUTAGE_MODES)}, got {scn.extra.get('outage')!r}")
    unknown = set(scn.extra) - LAB_KEYS
    for k in sorted(unknown):
        bad(k, f"lab.{k}", f"unknown key (allowed: {', '.join(sorted(LAB_KEYS))})")
    return out


def plan_run(scn: Scenario, lab_domain: str, lab_mx: list[tuple[int, str]], host_ip: dict[str, str],
             scale: Any = None) -> LabPlanRun:
    """The lab run for `scn` (unscaled, as loaded). `host_ip`: lab host -> address (for
    smtp_fallback_relay). `scale`: overrides the scenario's `lab.scale` (default 1/300)."""
    problems = shape_problems(scn, lab_domain, lab_mx)
    raw = scale if scale is not None else scn.extra.get("scale", DEFAULT_SCALE)
    try:
        f = parse_scale(raw)
    except ValueError as err:
        fld = "--scale" if scale is not None else "lab.scale"
        problems.append(f"{scn.source}:{_line_of(scn.source, 'scale') if scale is None else 1}: {fld}: {err}")
        f = DEFAULT_SCALE
    if problems:
        raise UserError("\n".join(problems))
    scaled = scn.scaled(float(f))
    hosts = dict(scaled.hosts)
    params: dict[str, dict[str, str]] = {}
    for name in POSTFIX_HOSTS:
        h = scn.hosts[name]
        lp = lab_policy(h.policy, f)
        hosts[name] = replace(hosts[name], policy=lp)
        fb = ", ".join(f"[{host_ip[LAB_HOSTS[x]]}]:25" for x in h.policy.fallback)
        params[LAB_HOSTS[name]] = {
            "queue_run_delay": f"{int(lp.scan_interval_s)}s",
            "minimal_backoff_time": f"{int(lp.min_backoff_s)}s",
            "maximal_backoff_time": f"{int(lp.max_backoff_s)}s",
            "maximal_queue_lifetime": f"{int(lp.lifetime_s)}s",
            "bounce_queue_lifetime": f"{int(lp.lifetime_s)}s",
            "smtp_fallback_relay": fb,
        }
    params["client"].update({"sender_canonical_classes": "envelope_sender",
                             "sender_canonical_maps": f"static:{BOUNCE_TO}@{lab_domain}"})
    model = replace(scaled, hosts=hosts)
    streams = []
    for i, t in enumerate(model.traffic):
        if t.messages == 0:
            continue
        step = (t.end_s - t.start_s) / t.messages
        if step < 1.0 / MAX_RATE_PER_S:
            raise UserError(f"{scn.source}:{_line_of(scn.source, 'traffic')}: traffic[{i}]: {1 / step:.1f} messages/s "
                            f"at scale {f}: the lab paces at most {MAX_RATE_PER_S:g}/s (fewer messages or a larger scale)")
        streams.append(Stream(i, t.messages, t.start_s + step / 2, step))
    # qmgr's wakeup (master.cf, 300 s) scans the incoming queue, where qmgr puts back a file it
    # found still locked by a delivery agent; unscaled, such a message would wait 300 s. At 1 s
    # backoffs plus Postfix's unscaled 1 s slack a just-deferred file is eligible at once, so
    # that race is common in the lab: the wakeup is scaled like every other timer.
    wakeup = f"{whole_seconds(300 * float(f), 1)}"
    master = {LAB_HOSTS[n]: {"qmgr/unix/wakeup": wakeup} for n in POSTFIX_HOSTS}
    return LabPlanRun(model, float(f), params, tuple(streams), fault_schedule(model), model.duration_s,
                      str(scn.extra.get("outage", "freeze")), master)


def fault_schedule(model: Scenario) -> tuple[FaultStep, ...]:
    """Down/up steps from the (merged, half-open) outages, in time order; at one instant hosts
    come up before others go down, and relay1 before relay2 (MX order: the preferred MX is
    ready first when both return)."""
    tl = Timeline(model)
    steps: list[FaultStep] = []
    for h in OUTAGE_HOSTS:
        for a, b in tl.outages(h):
            if a < model.duration_s:
                steps.append(FaultStep(a, h, "down"))
            if b < model.duration_s:
                steps.append(FaultStep(b, h, "up"))
    order = {"up": 0, "down": 1}
    return tuple(sorted(steps, key=lambda s: (s.at_s, order[s.action], OUTAGE_HOSTS.index(s.host))))
