"""Drill playbooks: one YAML file of steps and expectations, loaded into frozen dataclasses.

Every problem is reported as `FILE:LINE: field: message`, all at once, before anything runs
(hacluster.yamlread, the reader the spec, inventory and scenarios share). docs/drills.md describes the format.

Node references (`node:`, `to:`, `peer:`) are resolved when the step runs, because "the holder"
is only known then:
  NAME               a host of the target (store1, relay2, zk3, ...)
  holder(ROLE)       the node holding ROLE's VIP now
  standby(ROLE)      the best other candidate of ROLE's tier (highest priority, powered on)
  zk-leader          the ZooKeeper server leading now; zk-follower: the first follower
  zk-all             every ZooKeeper server (partitions only)
  $VAR               a name bound earlier by `bind:` or a step's `as:`
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ruamel.yaml.comments import CommentedMap, CommentedSeq

from hacluster.mx.scenario import parse_duration, parse_rate
from hacluster.yamlread import ProblemsError, Reader, load_yaml, read_text
from hacluster.yamlread import kind as _kind

FAULT_KINDS = ("kill-agent", "kill-mta", "freeze", "thaw", "power-off", "power-on", "isolate", "restart-agent",
               "partition", "heal", "freeze-host", "thaw-host")
#: a playbook's `lab:` settings: the lab it needs (every playbook of one run must agree)
LAB_SPOOLS = ("default", "shared-loop")
SAMPLES = ("degraded", "healthy")
SPOOL_FILL = ("full", "free")
_SELECTOR = re.compile(r"^(?:(holder|standby)\(([a-z][a-z0-9-]*)\)|zk-leader|zk-follower|zk-all|\$[A-Za-z_][A-Za-z0-9_]*"
                       r"|[a-z][a-z0-9-]*)$")
_VAR = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class PlaybookError(ProblemsError):
    """All problems of one playbook; str() is one `FILE:LINE: field: message` per line."""


# --------------------------------------------------------------------------- the objects


@dataclass(frozen=True)
class Ref:
    """A node reference as written (resolved at run time); `line` for late errors."""

    text: str
    line: int

    @property
    def role(self) -> str | None:
        m = re.match(r"^(?:holder|standby)\((.+)\)$", self.text)
        return m.group(1) if m else None


@dataclass(frozen=True)
class Step:
    kind: str  # wait, mark, bind, start_traffic, stop_traffic, fault, restore, switchover, maintenance,
    #            restart_agent, raid, spool, wait_until
    line: int
    id: str | None = None
    args: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """What the step does, for reports and the timeline (references as written)."""
        def show(v: Any) -> str:
            if isinstance(v, Ref):
                return v.text
            if isinstance(v, tuple):
                return ",".join(show(x) for x in v)
            return str(v)

        bits = [self.kind]
        if self.kind == "wait_until":
            cond = self.args.get("condition", "")
            target = self.args.get("node") or self.args.get("not") or self.args.get("count") or self.args.get("nodes")
            bits += [cond, show(target)] if target is not None else [cond]
        for k in ("kind", "node", "peer", "to", "sample", "fill", "state", "rate"):
            v = self.args.get(k)
            if v is not None and not (self.kind == "wait_until" and k == "node"):
                bits.append(show(v))
        return " ".join(bits)


@dataclass(frozen=True)
class Expectation:
    kind: str  # holder, holder_unchanged, no_takeover, max_gap, no_dual_holder, reached, no_lost_mail,
    #            queues_drain
    line: int
    args: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Playbook:
    name: str
    description: str
    source: str
    timeout_s: float
    role: str
    steps: tuple[Step, ...]
    expect: tuple[Expectation, ...]
    #: `lab: {spool: shared-loop, fencing: true}`: the store role's shared spool on a loop device,
    #: with fence_hacluster_lab (fencing: false = `fencing: self-only`); default: the drill lab
    lab: tuple[tuple[str, Any], ...] = ()
    # cluster-level spec keys this drill runs with (`spec: {failsafe: true}`); the target's agents
    # are restarted on that variant for the drill (docs/drills.md "Spec overrides")
    spec: tuple[tuple[str, Any], ...] = ()


# --------------------------------------------------------------------------- field converters


def _str(v: Any) -> str:
    if not isinstance(v, str) or not v:
        raise ValueError(f"must be a non-empty string, got {_kind(v)} {v!r}")
    return v


def _ref(line: int) -> Callable[[Any], Ref]:
    def conv(v: Any) -> Ref:
        if not isinstance(v, str) or not _SELECTOR.match(v):
            raise ValueError("must be a host name, holder(ROLE), standby(ROLE), zk-leader, zk-follower, zk-all "
                             f"or $VAR, got {_kind(v)} {v!r}")
        return Ref(v, line)
    return conv


def _refs(line: int) -> Callable[[Any], tuple[Ref, ...]]:
    one = _ref(line)

    def conv(v: Any) -> tuple[Ref, ...]:
        items = list(v) if isinstance(v, list) else [v]
        if not items:
            raise ValueError("must name at least one host")
        return tuple(one(x) for x in items)
    return conv


def _choice(options: tuple[str, ...]) -> Callable[[Any], str]:
    def conv(v: Any) -> str:
        if v not in options:
            raise ValueError(f"must be one of {', '.join(options)}, got {v!r}")
        return str(v)
    return conv


def _var(v: Any) -> str:
    if not isinstance(v, str) or not _VAR.match(v):
        raise ValueError(f"must be a variable name like victim (letters, digits, _), got {v!r}")
    return v


def _seconds(v: Any) -> float:
    d = parse_duration(v)
    if d > 3600:
        raise ValueError("must be at most 1h (drills are bounded)")
    return d


def _positive_seconds(v: Any) -> float:
    d = _seconds(v)
    if d <= 0:
        raise ValueError("must be > 0")
    return d


def _rate(v: Any) -> float:
    r = parse_rate(v)
    if r > 500:
        raise ValueError("must be at most 500/s")
    return r


def _plain(v: Any) -> Any:
    """A round-trip YAML value as plain dicts and lists (placement keys go into a spec file)."""
    if isinstance(v, CommentedMap):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, CommentedSeq):
        return [_plain(x) for x in v]
    return v


def _bool(v: Any) -> bool:
    if not isinstance(v, bool):
        raise ValueError(f"must be true or false, got {_kind(v)} {v!r}")
    return v


def _count(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise ValueError(f"must be an integer >= 0, got {_kind(v)} {v!r}")
    return v


def _onoff(v: Any) -> str:
    if v is True or v == "on":
        return "on"
    if v is False or v == "off":
        return "off"
    raise ValueError(f"must be on or off, got {v!r}")


# --------------------------------------------------------------------------- steps

#: step kind -> {field: (converter factory taking the line, required)}; a scalar value is shorthand
#: for the field named in SCALAR.
Conv = Callable[[int], Callable[[Any], Any]]


def _c(f: Callable[[Any], Any]) -> Conv:
    return lambda _line: f


#: field -> (converter, required); no converter: a structured field its step's reader reads itself
STEP_FIELDS: dict[str, dict[str, tuple[Conv | None, bool]]] = {
    "wait": {"seconds": (_c(_positive_seconds), True)},
    "mark": {"name": (_c(_var), True)},
    "bind": {},  # free-form: VAR: REF
    "start_traffic": {"rate": (_c(_rate), False), "connections": (_c(_count), False)},
    "stop_traffic": {},
    "fault": {"kind": (_c(_choice(FAULT_KINDS)), True), "node": (_ref, False), "peer": (_refs, False),
              "as": (_c(_var), False)},
    "restore": {},
    "switchover": {"role": (_c(_str), False), "to": (_ref, False), "wait": (_c(_positive_seconds), False),
                   "at": (_c(_positive_seconds), False)},  # at: schedule it this long from now (--at)
    "standby": {"node": (_ref, True), "lifetime": (_c(_positive_seconds), False),
                "wait": (_c(_positive_seconds), False), "as": (_c(_var), False)},
    "unstandby": {"node": (_ref, True)},
    # roles.ROLE placement keys for this drill (the tier's agents restart with them; restore undoes it)
    "placement": {"role": (_c(_str), False), "failback": (None, False), "prefer": (None, False),
                  "nodes": (None, False), "avoid_with": (None, False)},
    "imap": {"user": (_c(_str), False), "min_messages": (_c(_count), False), "timeout": (_c(_positive_seconds), False),
             "send": (_c(_bool), False), "as": (_c(_var), False)},
    "maintenance": {"state": (_c(_onoff), True)},
    "restart_agent": {"node": (_ref, True), "as": (_c(_var), False)},
    "raid": {"node": (_ref, True), "sample": (_c(_choice(SAMPLES)), True), "as": (_c(_var), False)},
    "spool": {"node": (_ref, True), "fill": (_c(_choice(SPOOL_FILL)), True), "as": (_c(_var), False)},
    "wait_until": {"timeout": (_c(_positive_seconds), True), "holder": (None, False), "zk_leader": (None, False),
                   "zk_serving": (_c(_count), False), "member": (None, False), "queues_empty": (None, False)},
}
SCALAR = {"wait": "seconds", "mark": "name", "maintenance": "state"}
COMMON = {"id"}

EXPECT_FIELDS: dict[str, dict[str, tuple[Conv | None, bool]]] = {
    "holder": {"role": (_c(_str), False), "node": (_ref, True), "after": (_c(_var), False),
               "within": (_c(_seconds), True)},
    "holder_unchanged": {"role": (_c(_str), False), "after": (_c(_var), False), "until": (_c(_var), False)},
    "no_takeover": {"role": (_c(_str), False), "after": (_c(_var), False), "until": (_c(_var), False)},
    "max_gap": {"role": (_c(_str), False), "max": (_c(_seconds), True), "after": (_c(_var), False),
                "until": (_c(_var), False)},
    "no_dual_holder": {},
    "reached": {"step": (_c(_var), True), "within": (_c(_seconds), True)},
    "no_lost_mail": {"wait": (_c(_positive_seconds), False), "min_accepted": (_c(_count), False),
                     "max_not_accepted": (_c(_count), False), "max_duplicates": (_c(_count), False)},
    "queues_drain": {"nodes": (None, False), "within": (_c(_positive_seconds), True)},
    # host fencing (lab `spool: shared-loop`): the node was fenced (off, status off) within the bound
    # after the anchor; and the spool audit saw no write of it after that fence
    "fenced": {"node": (_ref, True), "after": (_c(_var), False), "within": (_c(_seconds), True)},
    "no_spool_write_after_fence": {"node": (_ref, True)},
    "no_holder": {"role": (_c(_str), False), "after": (_c(_var), True), "within": (_c(_seconds), True),
                  "until": (_c(_var), False)},
    "max_queued": {"nodes": (None, False), "max": (_c(_count), True), "after": (_c(_var), False),
                   "until": (_c(_var), False)},
}

#: the spec keys a playbook may override (`spec:`), with their converters
SPEC_OVERRIDES: dict[str, Callable[[Any], Any]] = {"failsafe": _bool}


def _read_fields(r: Reader, body: Any, path: str, line: int, spec: dict[str, tuple[Conv | None, bool]],
                 scalar: str | None) -> dict[str, Any] | None:
    if body is None:
        body = CommentedMap()
    if not isinstance(body, CommentedMap):
        if scalar is None:
            r.problem(line, path, f"must be a mapping, got {_kind(body)} {body!r}")
            return None
        conv, _ = spec[scalar]
        assert conv is not None  # every SCALAR field has a converter
        try:
            return {scalar: conv(line)(body)}
        except (ValueError, TypeError) as err:
            r.problem(line, path, str(err))
            return None
    r.mapping(body, path, set(spec) | COMMON, line)
    out: dict[str, Any] = {}
    for key, (conv, required) in spec.items():
        if conv is None:
            continue  # structured fields are read by the caller
        out[key] = r.value(body, key, path, conv(r.line_of(body, key)), required=required)
    if "id" in body:
        out["id"] = r.value(body, "id", path, _var)
    return out


def _read_condition(r: Reader, body: CommentedMap, path: str, args: dict[str, Any]) -> None:
    """wait_until: exactly one condition."""
    conds = [k for k in ("holder", "zk_leader", "zk_serving", "member", "queues_empty") if k in body]
    line = r.line_of(body)
    if len(conds) != 1:
        r.problem(line, path, "needs exactly one condition: holder, zk_leader, zk_serving, member or queues_empty")
        return
    cond = conds[0]
    cpath = f"{path}.{cond}"
    cline = r.line_of(body, cond)
    args["condition"] = cond
    if cond == "holder":
        m = r.mapping(body[cond], cpath, {"role", "node"}, cline)
        if m is not None:
            args["role"] = r.value(m, "role", cpath, _str)
            node = m.get("node")
            if node in ("none", "any"):
                args["node"] = node
            else:
                args["node"] = r.value(m, "node", cpath, _ref(r.line_of(m, "node")), required=True)
    elif cond == "zk_leader":
        m = r.mapping(body[cond], cpath, {"not"}, cline)
        if m is not None:
            args["not"] = r.value(m, "not", cpath, _ref(r.line_of(m, "not")), required=True)
    elif cond == "zk_serving":
        args["count"] = args.pop("zk_serving")
    elif cond == "member":
        m = r.mapping(body[cond], cpath, {"node", "reason", "no_reason", "healthy"}, cline)
        if m is not None:
            args["node"] = r.value(m, "node", cpath, _ref(r.line_of(m, "node")), required=True)
            args["reason"] = r.value(m, "reason", cpath, _str)
            args["no_reason"] = r.value(m, "no_reason", cpath, _str)
            args["healthy"] = r.value(m, "healthy", cpath, _bool)
            if args["reason"] is None and args["no_reason"] is None and args["healthy"] is None:
                r.problem(cline, cpath, "needs reason, no_reason or healthy")
    elif cond == "queues_empty":
        args["nodes"] = _read_nodes(r, body, cond, path)
    args.pop("zk_serving", None)


def _read_nodes(r: Reader, body: CommentedMap, key: str, path: str) -> tuple[Ref, ...] | None:
    """A list of node references; `all` (or null) = every host that runs Postfix."""
    v = body.get(key)
    if v is None or v == "all":
        return None
    return r.value(body, key, path, _refs(r.line_of(body, key)))


def _read_steps(r: Reader, root: CommentedMap) -> list[Step]:
    seq = root.get("steps")
    if not isinstance(seq, CommentedSeq) or not seq:
        r.problem(r.line_of(root, "steps") if "steps" in root else 1, "steps", "is required: a non-empty list of steps")
        return []
    steps: list[Step] = []
    for i, item in enumerate(seq):
        path = f"steps[{i}]"
        line = r.line_of(seq, i)
        if not isinstance(item, CommentedMap) or len(item) != 1:
            r.problem(line, path, f"must be a one-key mapping like `wait: 2s` (step kinds: {', '.join(STEP_FIELDS)})")
            continue
        kind, body = next(iter(item.items()))
        if kind not in STEP_FIELDS:
            r.problem(line, f"{path}.{kind}", f"unknown step (known: {', '.join(STEP_FIELDS)})")
            continue
        spath = f"{path}.{kind}"
        if kind == "bind":
            m = r.mapping(body, spath, None, line)
            if m is None:
                continue
            binds = {}
            for var, ref in m.items():
                try:
                    binds[_var(var)] = _ref(r.line_of(m, var))(ref)
                except ValueError as err:
                    r.problem(r.line_of(m, var), f"{spath}.{var}", str(err))
            if not binds:
                r.problem(line, spath, "binds nothing: give VAR: REF pairs")
            steps.append(Step(kind, line, None, {"vars": binds}))
            continue
        args = _read_fields(r, body, spath, line, STEP_FIELDS[kind], SCALAR.get(kind))
        if args is None:
            continue
        if kind == "wait_until" and isinstance(body, CommentedMap):
            _read_condition(r, body, spath, args)
        if kind == "placement":
            keys = ("failback", "prefer", "nodes", "avoid_with")
            found = {k: _plain(body[k]) for k in keys if isinstance(body, CommentedMap) and k in body}
            if not found:
                r.problem(line, spath, f"needs one of {', '.join(keys)} (the role's placement keys in the spec)")
            args.update(found)
        sid = args.pop("id", None)
        if kind == "fault":
            k = args.get("kind")
            if k == "partition" and (args.get("node") is None or args.get("peer") is None):
                r.problem(line, spath, "a partition needs node and peer")
            elif k == "heal" and (args.get("node") is not None or args.get("peer") is not None):
                r.problem(line, spath, "heal takes no node or peer (it heals every partition)")
            elif k not in ("partition", "heal", None) and args.get("node") is None:
                r.problem(line, f"{spath}.node", "is required")
            elif k not in ("partition", None) and args.get("peer") is not None:
                r.problem(r.line_of(body, "peer"), f"{spath}.peer", f"only a partition has a peer (kind is {k})")
        steps.append(Step(kind, line, sid, {k: v for k, v in args.items()}))
    return steps


def _read_expect(r: Reader, root: CommentedMap) -> list[Expectation]:
    seq = root.get("expect")
    if not isinstance(seq, CommentedSeq) or not seq:
        r.problem(r.line_of(root, "expect") if "expect" in root else 1, "expect",
                  "is required: a non-empty list of expectations")
        return []
    out: list[Expectation] = []
    for i, item in enumerate(seq):
        path = f"expect[{i}]"
        line = r.line_of(seq, i)
        if isinstance(item, str) and item in EXPECT_FIELDS:
            item_kind, body = item, None
        elif isinstance(item, CommentedMap) and len(item) == 1:
            item_kind, body = next(iter(item.items()))
        else:
            r.problem(line, path, f"must be a one-key mapping (expectations: {', '.join(EXPECT_FIELDS)})")
            continue
        if item_kind not in EXPECT_FIELDS:
            r.problem(line, f"{path}.{item_kind}", f"unknown expectation (known: {', '.join(EXPECT_FIELDS)})")
            continue
        epath = f"{path}.{item_kind}"
        args = _read_fields(r, body, epath, line, EXPECT_FIELDS[item_kind], None)
        if args is None:
            continue
        if "id" in args:
            r.problem(line, f"{epath}.id", "expectations have no id")
        if item_kind in ("queues_drain", "max_queued") and isinstance(body, CommentedMap):
            args["nodes"] = _read_nodes(r, body, "nodes", epath)
        out.append(Expectation(item_kind, line, args))
    return out


def _cross_checks(r: Reader, steps: list[Step], expect: list[Expectation]) -> None:
    """Ids unique, references to marks/steps/variables defined before use."""
    names: dict[str, int] = {}
    bound: set[str] = set()
    for s in steps:
        for ref in _step_refs(s):
            if ref.text.startswith("$") and ref.text[1:] not in bound:
                r.problem(ref.line, f"line {s.line}: {s.kind}", f"{ref.text} is used before it is bound (bind: or as:)")
        new: list[str | None] = [s.id] if s.id else []
        if s.kind == "mark":
            new.append(s.args.get("name"))
        for n in new:
            if n is None:
                continue
            if n in names:
                r.problem(s.line, f"{s.kind}.id", f"{n!r} is already the name of the step at line {names[n]}")
            names[n] = s.line
        if s.kind == "bind":
            bound |= set(s.args["vars"])
        if s.args.get("as"):
            bound.add(s.args["as"])
    waits = {s.id for s in steps if s.kind == "wait_until" and s.id}
    for e in expect:
        for key in ("after", "until"):
            v = e.args.get(key)
            if v is not None and v not in names:
                r.problem(e.line, f"{e.kind}.{key}", f"no step or mark named {v!r} (named: {', '.join(sorted(names)) or 'none'})")
        if e.kind == "reached" and e.args.get("step") not in waits:
            r.problem(e.line, "reached.step", f"no wait_until step with id {e.args.get('step')!r}")
        for ref in [e.args.get("node"), *(e.args.get("nodes") or ())]:
            if isinstance(ref, Ref) and ref.text.startswith("$") and ref.text[1:] not in bound:
                r.problem(ref.line, f"{e.kind}.node", f"{ref.text} is never bound (bind: or as:)")
            elif isinstance(ref, Ref) and (ref.role or ref.text.startswith("zk-")):
                r.problem(ref.line, f"{e.kind}.node", f"{ref.text} changes during a drill: bind it in a step "
                          "(bind: {new: standby(store)}) and name $new here")


def _step_refs(s: Step) -> list[Ref]:
    out: list[Ref] = []
    for v in s.args.values():
        if isinstance(v, Ref):
            out.append(v)
        elif isinstance(v, tuple):
            out.extend(x for x in v if isinstance(x, Ref))
        elif isinstance(v, dict):
            out.extend(x for x in v.values() if isinstance(x, Ref))
    return out


def refs(pb: Playbook) -> list[Ref]:
    """Every node reference of a playbook (for checks against a target's host names)."""
    out = [x for s in pb.steps for x in _step_refs(s)]
    for e in pb.expect:
        out += [x for x in (e.args.get("node"), *(e.args.get("nodes") or ())) if isinstance(x, Ref)]
    return out


def roles_used(pb: Playbook) -> list[tuple[str, int]]:
    """(role, line) of every role named explicitly or through holder(ROLE)/standby(ROLE)."""
    out = [(pb.role, 1)]
    for s in pb.steps:
        if s.args.get("role"):
            out.append((s.args["role"], s.line))
    for e in pb.expect:
        if e.args.get("role"):
            out.append((e.args["role"], e.line))
    out += [(ref.role, ref.line) for ref in refs(pb) if ref.role]
    return out


# --------------------------------------------------------------------------- entry points

_TOP = {"name", "description", "timeout", "role", "spec", "steps", "expect", "lab"}


def _read_lab(r: Reader, root: CommentedMap) -> tuple[tuple[str, Any], ...]:
    if "lab" not in root:
        return ()
    m = r.mapping(root["lab"], "lab", {"spool", "fencing"}, r.line_of(root, "lab"))
    if m is None:
        return ()
    spool = r.value(m, "spool", "lab", _choice(LAB_SPOOLS), default="default")
    fencing = r.value(m, "fencing", "lab", _bool, default=True)
    return (("spool", spool), ("fencing", fencing))


def _read_spec(r: Reader, root: CommentedMap) -> tuple[tuple[str, Any], ...]:
    """`spec:` -- the cluster-level keys this drill runs with (only SPEC_OVERRIDES)."""
    if "spec" not in root:
        return ()
    m = r.mapping(root["spec"], "spec", set(SPEC_OVERRIDES), r.line_of(root, "spec"))
    if m is None:
        return ()
    out = []
    for key, conv in SPEC_OVERRIDES.items():
        if key in m:
            v = r.value(m, key, "spec", conv)
            if v is not None:
                out.append((key, v))
    return tuple(out)


def parse_playbook(text: str, source: str = "<memory>") -> Playbook:
    """Parse and validate playbook text; raise PlaybookError listing every problem."""
    root = load_yaml(text, source, PlaybookError)
    if not isinstance(root, CommentedMap):
        raise PlaybookError([f"{source}:1: (top): must be a mapping with steps and expect"])
    r = Reader(source)
    r.mapping(root, "", _TOP, 1)
    name = r.value(root, "name", "", _str, default=Path(source).stem)
    description = r.value(root, "description", "", str, default="")
    timeout = r.value(root, "timeout", "", _positive_seconds, default=300.0)
    role = r.value(root, "role", "", _str, default="store")
    spec = _read_spec(r, root)
    steps = _read_steps(r, root)
    expect = _read_expect(r, root)
    lab = _read_lab(r, root)
    _cross_checks(r, steps, expect)
    if r.problems:
        raise PlaybookError(r.render())
    return Playbook(name, " ".join(str(description).split()), source, timeout, role, tuple(steps), tuple(expect),
                    lab=lab, spec=spec)


def load_playbook(path: str | Path) -> Playbook:
    return parse_playbook(read_text(path, PlaybookError), str(path))


def check_against(pb: Playbook, hosts: set[str], roles: set[str]) -> None:
    """Host names and roles must exist on the target: a typo is an input error, found before a
    single fault is injected."""
    r = Reader(pb.source)
    for ref in refs(pb):
        t = ref.text
        if t.startswith("$") or t in ("zk-leader", "zk-follower", "zk-all") or ref.role:
            continue
        if t == "any" and any(e.kind == "holder" and e.args.get("node") is ref for e in pb.expect):
            continue  # `holder: {node: any}`: one holder, whichever
        if t not in hosts:
            r.problem(ref.line, "node", f"no host {t!r} on this target (hosts: {', '.join(sorted(hosts))})")
    for role, line in roles_used(pb):
        if role not in roles:
            r.problem(line, "role", f"no role {role!r} in the cluster spec (roles: {', '.join(sorted(roles))})")
    if r.problems:
        raise PlaybookError(r.render())
