"""The shared YAML reader: every problem as FILE:LINE: field: message, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from hacluster.errors import UserError
from hacluster.yamlread import ProblemsError, Reader, load_yaml, read_text


def test_syntax_error_names_line() -> None:
    with pytest.raises(ProblemsError) as exc:
        load_yaml("a: 1\nb: [1, 2\nc: 3\n", "f.yml")
    assert str(exc.value).startswith("f.yml:")
    assert "(yaml)" in str(exc.value)


def test_duplicate_key_is_an_error_with_line() -> None:
    with pytest.raises(ProblemsError) as exc:
        load_yaml("a: 1\nb: 2\na: 3\n", "d.yml")
    assert str(exc.value).startswith("d.yml:")


def test_not_utf8_names_line_and_column(tmp_path: Path) -> None:
    p = tmp_path / "x.yml"
    p.write_bytes(b"a: 1\nb: \xff\n")
    with pytest.raises(ProblemsError) as exc:
        read_text(p)
    assert str(exc.value) == f"{p}:2: (encoding): not UTF-8: byte 0xff at column 4"


def test_missing_file_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="cannot read"):
        read_text(tmp_path / "nope.yml")


def test_reader_collects_all_problems_sorted_by_line() -> None:
    root = load_yaml("name: 7\nport: true\nextra: 1\nratio: 2\n", "s.yml")
    r = Reader("s.yml")
    r.mapping(root, "", {"name", "port", "ratio"}, 1)
    assert r.get(root, "name", "", str) is None
    assert r.get(root, "port", "", int) is None  # a bool is not a number
    assert r.get(root, "ratio", "", float) == 2.0  # an int is a float
    assert r.value(root, "ratio", "", lambda v: int("x" * v)) is None
    assert r.get(root, "missing", "", str, required=True) is None
    assert r.render() == [
        "s.yml:1: name: must be str, got int 7",
        "s.yml:1: missing: is required",
        "s.yml:2: port: must be int, got bool True",
        "s.yml:3: extra: unknown key (allowed: name, port, ratio)",
        "s.yml:4: ratio: invalid literal for int() with base 10: 'xx'",
    ]


@pytest.mark.parametrize("key", ["a\\nb", "a\\rb", "a\\Nb", "a\\Lb", "a\\Pb", "a\\vb", "a\\fb", "a\\x1cb"])
def test_a_problem_is_one_line_whatever_its_key(key: str) -> None:
    """A quoted key may hold a line break (\\n, NEL, U+2028, ...): the report escapes it, so each
    problem stays one `FILE:LINE: field: message` line (test_fuzz_spec met `health: {" \\x85": ~}`)."""
    root = load_yaml(f'ok: 1\n"{key}": 2\n', "k.yml")
    r = Reader("k.yml")
    r.mapping(root, "", {"ok"}, 1)
    r.problem(2, "f", f"message about {list(root)[1]}")  # a message quoting the key raw
    lines = r.render()
    assert len(lines) == 2 and all(len(ln.splitlines()) == 1 for ln in lines), lines
    assert lines[0].startswith("k.yml:2: a\\") and lines[0].endswith("b: unknown key (allowed: ok)"), lines
