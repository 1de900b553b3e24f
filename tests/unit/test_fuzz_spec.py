"""Property tests for the spec loader: any text (or bytes on disk) gives a ClusterSpec or a
SpecError/UserError whose every line is `FILE:LINE: field: message` with LINE inside the file,
never another exception. tests/unit/test_spec.py has the hand-picked cases and a seeded
mutation loop; here hypothesis drives YAML built from YAML's own pieces, structural edits of
lab.yml (with shrinking to a minimal failing edit), and raw bytes through `load_spec`.
"""

from __future__ import annotations

import re
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from hacluster.errors import UserError
from hacluster.spec import ClusterSpec, SpecError, default_spec_text, load_spec, parse_spec

SOURCE = "f.yml"
LOCATED = re.compile(re.escape(SOURCE) + r":(\d+): (.+?): (.+)")  # a field may be any key text
LAB = default_spec_text().splitlines()

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
    n = (text.count("\n") + 2) if text is not None else None
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
    assert isinstance(spec, ClusterSpec) and spec.nodes and spec.roles
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
