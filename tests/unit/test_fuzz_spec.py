"""Property tests for the spec loader: any text (or bytes on disk) gives a ClusterSpec or a
SpecError/UserError whose every line is `FILE:LINE: field: message` with LINE inside the file,
never another exception. tests/unit/test_spec.py has the hand-picked cases and a seeded
mutation loop; here hypothesis drives YAML built from YAML's own pieces, structural edits of
lab.yml (with shrinking to a minimal failing edit), raw bytes through `load_spec`, and specs
generated section by section (every top-level section, every resource type and check, with
their keys taken from the reader's own tables) so each section's reader meets wrong types at
every depth.
"""

from __future__ import annotations

import re
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from hacluster.errors import UserError
from hacluster.notify import NOTIFY_KEYS
from hacluster.spec import (CHECK_COMMON, CHECK_PARAMS, RESOURCE_PARAMS, TIERS, ClusterSpec, SpecError,
                            default_spec_text, load_spec, parse_spec)
from hacluster.timing import PROFILES, Timing

SOURCE = "f.yml"
LOCATED = re.compile(re.escape(SOURCE) + r":(\d+): (.+?): (.+)")  # a field may be any key text
LAB = default_spec_text().splitlines()
YAML_BREAK = re.compile("\r\n|[\n\r\x85\u2028\u2029]")

KEYS = ["cluster", "mail", "domain", "zookeeper", "hosts", "chroot", "auth_file", "session_timeout_s", "timing",
        "profile", "lease_s", "loop_s", "roles", "store", "tier", "vip", "address", "interface", "resources", "type",
        "name", "nodes", "addresses", "priority", "api", "port", "bind", "token_file", "tls_cert", "tls_key",
        "tls_client_ca", "lab", "segments", "health", "check", "scope", "rise", "bogus"]
SCALARS = ["", "0", "-1", "1.5", "1e400", ".nan", ".inf", "null", "~", "true", "no", "'s'", '"\\ud800"', "x",
           "store", "relay", "eth0", "192.0.2.10/24", "fd00::1/64", "300.1.1.1/8", "127.0.0.1:2181", "a:b:c",
           "/hacluster", "!!binary aGk=", "!!python/object:os.system {}", "&a 1", "*a", "*b", "|", ">", "? x",
           "[", "{", "]", "}", "'", '"', "#", "%", "@", "`", "\t", "\x00", "\x85", "\ufeff", "2001-01-01",
           "0x1F", "0o17", "1_000", "=", "<<: *a", "[1, [2, [3]]]", "{a: {b: {c: 1}}}"]

scalar = st.one_of(st.sampled_from(SCALARS), st.integers(-10**20, 10**20).map(str), st.text(max_size=12))
line = st.builds(lambda ind, key, sep, val: " " * ind + key + sep + val,
                 st.integers(0, 8), st.one_of(st.sampled_from(KEYS), st.just("-"), st.just("- " + "name")),
                 st.sampled_from([": ", ":", " ", ": - ", ": [", ": {"]), scalar)
yamlish = st.lists(line, max_size=30).map("\n".join)


def assert_located(err: UserError, text: str | None) -> None:
    """Every line of the report is FILE:LINE: field: message, LINE within the text."""
    lines = str(err).splitlines()
    assert lines, "an error with no message"
    # YAML counts NEL, LS and PS (and a lone CR) as line breaks too, so a report may name a later line
    n = (len(YAML_BREAK.findall(text)) + 2) if text is not None else None
    for ln in lines:
        m = LOCATED.fullmatch(ln)
        assert m, f"not FILE:LINE: field: message: {ln!r}"
        assert 1 <= int(m[1]) and (n is None or int(m[1]) <= n), (ln, n)


def parse_ok(text: str) -> None:
    try:
        spec = parse_spec(text, SOURCE)
    except SpecError as err:
        assert err.problems
        assert_located(err, text)
        return
    # `roles: {}` is accepted (nodes with nothing to fail over), so a valid spec may have no roles
    assert isinstance(spec, ClusterSpec) and spec.nodes
    for role in spec.roles.values():  # a valid spec is usable: every role has somewhere to run
        assert spec.candidates(role.name)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(yamlish)
@example("cluster: a\x00\n")  # ruamel's ReaderError: multi-line, no mark
@example("a: 1\n" * 3 + "b: \x85\x00")
@example("cluster: [\n" * 40)
@example("- " * 400 + "x")
def test_yaml_built_from_pieces(text: str) -> None:
    parse_ok(text)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_any_text(text: str) -> None:
    parse_ok(text)


# edits of the real lab spec: each keeps most of the file valid, so the reader gets deep
edit = st.one_of(
    st.tuples(st.just("replace-value"), st.integers(0, len(LAB) - 1), scalar),
    st.tuples(st.just("insert"), st.integers(0, len(LAB)), line),
    st.tuples(st.just("delete"), st.integers(0, len(LAB) - 1), st.none()),
    st.tuples(st.just("indent"), st.integers(0, len(LAB) - 1), st.integers(-4, 4)),
    st.tuples(st.just("duplicate"), st.integers(0, len(LAB) - 1), st.none()),
    st.tuples(st.just("splice"), st.integers(0, len(LAB) - 1), st.tuples(st.integers(0, 80), scalar)),
)


def apply(lines: list[str], op: str, i: int, arg: object) -> list[str]:
    lines = list(lines)
    i = min(i, max(len(lines) - 1, 0)) if op != "insert" else min(i, len(lines))
    if not lines and op != "insert":
        return lines
    if op == "replace-value":
        key, sep, _ = lines[i].partition(":")
        lines[i] = f"{key}: {arg}" if sep else f"{lines[i]} {arg}"
    elif op == "insert":
        lines.insert(i, str(arg))
    elif op == "delete":
        del lines[i]
    elif op == "indent":
        n = int(arg)  # type: ignore[call-overload]
        lines[i] = " " * n + lines[i] if n >= 0 else lines[i][min(-n, len(lines[i]) - len(lines[i].lstrip())):]
    elif op == "duplicate":
        lines.insert(i, lines[i])
    elif op == "splice":
        at, s = arg  # type: ignore[misc]
        lines[i] = lines[i][:at] + s + lines[i][at:]
    return lines


@settings(max_examples=500, deadline=None)
@given(st.lists(edit, min_size=1, max_size=4))
def test_edits_of_the_lab_spec(edits: list[tuple[str, int, object]]) -> None:
    lines = LAB
    for op, i, arg in edits:
        lines = apply(lines, op, i, arg)
    parse_ok("\n".join(lines) + "\n")


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.binary(max_size=300),
                 st.tuples(st.integers(0, len("\n".join(LAB))), st.binary(min_size=1, max_size=4)).map(
                     lambda t: "\n".join(LAB).encode()[:t[0]] + t[1] + "\n".join(LAB).encode()[t[0]:])))
@example(b"cluster: a\xff\xfe\n")
@example("\n".join(LAB).encode() + b"\n# caf\xe9\n")
def test_bytes_on_disk_through_load_spec(tmp_path_factory, data: bytes) -> None:
    """What `hacluster config check FILE` and the agent read: bad UTF-8 is a located problem too."""
    f = Path(tmp_path_factory.mktemp("spec")) / SOURCE
    f.write_bytes(data)
    try:
        load_spec(f)
    except UserError as err:
        lines = str(err).splitlines()
        assert lines and all(re.fullmatch(re.escape(str(f)) + r":\d+: .+?: .+", ln) for ln in lines), lines


# --------------------------------------------------------------------------- specs built section by section
# Values are either plausible for their key (so a reader gets past its first type check and deep
# into the section) or anything at all: a scalar, a list, a mapping, nested. Keys come from the
# reader's tables where it has them, so a key added to the spec is fuzzed without touching this.

junk_scalar = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8),
                        st.sampled_from(["", "~", "x", "/", "{", "0", "-1", "1e400", "eth0", "store"]))
anything = st.recursive(junk_scalar, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)), max_leaves=6)


def or_junk(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(strategy, anything)


def mapping(fields: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """A mapping with any subset of `fields` (each plausible or junk), sometimes an unknown key too."""
    return st.fixed_dictionaries({}, optional={**{k: or_junk(v) for k, v in fields.items()}, "bogus": anything})


NAME = st.sampled_from(["store", "relay", "fallback", "store1", "store2", "relay1", "postfix", "store-vip", "Bad_Name",
                        "", "a" * 64])
TIER = st.sampled_from([*TIERS, "storage"])
IFACE = st.sampled_from(["eth0", "eth1", "lo", ""])
ADDR = st.sampled_from(["198.51.100.11/24", "198.51.100.12/24", "198.51.100.20/24", "fd00:51::20/64", "192.0.2.11/24",
                        "203.0.113.10/24", "198.51.100.20", "300.1.1.1/8", "fd00::1/129", "x/24"])
IP = st.sampled_from(["198.51.100.1", "203.0.113.1", "192.0.2.1", "fd00::1", "300.0.0.1", "x", ""])
NET = st.sampled_from(["203.0.113.0/24", "192.0.2.0/24", "198.51.100.0/24", "fd00:51::/64", "192.0.2.1/24",
                       "10.0.0.0/33", "fd00::/129", "x"])
PATH = st.sampled_from(["/etc/hacluster/f", "relative/f", "", "/", "{state_dir}/notify-outbox", "/var/{bogus}", "/x/{",
                        "/usr/sbin/sendmail"])
SECONDS = st.one_of(st.floats(-1, 1e6), st.integers(-5, 10**6), st.sampled_from([float("nan"), float("inf"), 0]))
NUMBER = st.one_of(st.integers(-10, 70000), st.integers())
MAIL = st.sampled_from(["ops@example.org", "postmaster@lab.example", "not-an-address", "a@", "<a>@b", ""])
HOST_PORT = st.sampled_from(["127.0.0.1:2181", "a:b", "h:0", "h:99999", "2181"])
#: plausible values for parameters that share a name across resources and checks; others get junk
PARAM = {"timeout_s": SECONDS, "interval_s": SECONDS, "rise": NUMBER, "fall": NUMBER, "port": NUMBER,
         "start": st.just("true"), "stop": st.just("true"), "monitor": st.just("true"), "config_dir": PATH,
         "path": PATH, "scope": st.sampled_from(["node", "holder", "x"]), "host": IP, "guard": st.booleans(),
         "mode": st.sampled_from(["shared", "mirrored"]), "agent": st.sampled_from(["heartbeat:IPaddr2", "x"])}


def params(names: frozenset[str] | set[str]) -> dict[str, st.SearchStrategy[Any]]:
    return {n: PARAM.get(n, anything) for n in sorted(names)}


vip = mapping({"address": ADDR, "interface": IFACE})
resource = st.sampled_from([*RESOURCE_PARAMS, "bogus"]).flatmap(
    lambda t: mapping({"type": st.just(t), "name": NAME, **params(RESOURCE_PARAMS.get(t, frozenset()))}))
role = mapping({"tier": TIER, "vip": st.one_of(vip, st.lists(or_junk(vip), max_size=3)),
                "resources": st.lists(or_junk(resource), max_size=3),
                "run_on_standby": st.lists(or_junk(NAME), max_size=2)})
node = mapping({"name": NAME, "tier": TIER, "interface": IFACE, "addresses": st.lists(or_junk(ADDR), max_size=2),
                "priority": NUMBER, "mx_preference": NUMBER, "api_address": IP})
check = st.sampled_from([*CHECK_PARAMS, "bogus"]).flatmap(lambda c: mapping(
    {"check": st.just(c), **params(CHECK_COMMON - {"check"}), **params(CHECK_PARAMS.get(c, frozenset()))}))
segment = mapping({"subnet": NET, "router": IP, "subnet6": NET})

SECTIONS: dict[str, st.SearchStrategy[Any]] = {
    "cluster": NAME,
    "mail": mapping({"domain": st.sampled_from(["lab.example", "example.org", ""]), "admin": MAIL}),
    "zookeeper": mapping({"hosts": st.one_of(st.lists(or_junk(HOST_PORT), max_size=3),
                                             st.just("127.0.0.1:2181,127.0.0.2:2181")),
                          "chroot": st.sampled_from(["/hacluster", "/", "x", "/a/"]), "session_timeout_s": SECONDS,
                          "auth_file": PATH}),
    "timing": mapping({"profile": st.sampled_from([*PROFILES, "turbo"]),
                       **{f: SECONDS for f in Timing.__dataclass_fields__}}),
    "roles": st.dictionaries(NAME, or_junk(role), max_size=3),
    "nodes": st.lists(or_junk(node), max_size=4),
    "api": mapping({"port": NUMBER, "bind": IP, "token_file": PATH, "tls_cert": PATH, "tls_key": PATH,
                    "tls_client_ca": PATH}),
    "lab": mapping({"segments": st.dictionaries(st.sampled_from(["internet", "public", "internal", "bogus"]),
                                                or_junk(segment), max_size=3),
                    "client": mapping({"address": ADDR}), "dns": mapping({"address": ADDR})}),
    "health": st.dictionaries(TIER, or_junk(st.lists(or_junk(check), max_size=3)), max_size=3),
    "failsafe": st.one_of(st.booleans(), anything),
    "fencing": st.one_of(st.sampled_from(["required", "self-only", "none"]), anything),
    "fence": st.one_of(st.none(), mapping({
        "timeout_s": SECONDS, "secrets_file": PATH,
        "nodes": st.dictionaries(NAME, or_junk(mapping({"agent": st.sampled_from(["fence_ipmilan", "/usr/sbin/fence_virsh", "ipmi"]),
                                                         "params": st.dictionaries(st.sampled_from(["ip", "plug", "action", "Bad-Key"]),
                                                                                   anything, max_size=3)})), max_size=3)})),
    "notify": st.one_of(st.none(), mapping({
        **{k: anything for k in NOTIFY_KEYS}, "sender": MAIL, "smtp_port": NUMBER, "smtp_timeout_s": SECONDS,
        "script_timeout_s": SECONDS, "sendmail": st.one_of(st.none(), PATH), "outbox": st.one_of(st.none(), PATH),
        "scripts": st.lists(or_junk(PATH), max_size=2)})),
}


def test_sections_cover_the_reader() -> None:
    """Every top-level key parse_spec accepts has a generator here: the reader lists the keys it
    allows when it meets one it does not, so a new section fails this until it is fuzzed too."""
    with pytest.raises(SpecError) as err:
        parse_spec(default_spec_text() + "newsection: 1\n", SOURCE)
    allowed = re.search(r"newsection: unknown key \(allowed: ([^)]*)\)", str(err.value))
    assert allowed, str(err.value)
    assert set(allowed[1].split(", ")) == set(SECTIONS)


def to_yaml(data: Any) -> str:
    """Block-style YAML (one key per line, so reported line numbers mean something)."""
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    out = StringIO()
    yaml.dump(data, out)
    return out.getvalue()


LAB_DATA: dict[str, Any] = dict(YAML(typ="safe", pure=True).load(default_spec_text()))  # plain values, no line info


# examples are few per run (the suite runs on small machines); hypothesis keeps what failed
@pytest.mark.parametrize("section", sorted(SECTIONS))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_each_section_of_the_lab_spec_replaced(section: str, data: st.DataObject) -> None:
    """The rest of the file is the valid lab spec, so cross-section checks see this section too."""
    spec = dict(LAB_DATA)
    spec[section] = data.draw(or_junk(SECTIONS[section]), label=section)
    parse_ok(to_yaml(spec))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.fixed_dictionaries({}, optional=SECTIONS))
def test_whole_specs_built_from_sections(spec: dict[str, Any]) -> None:
    parse_ok(to_yaml(spec))
