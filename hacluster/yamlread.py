"""Reading operator-written YAML (cluster spec, inventory, scenarios, playbooks) with line numbers.

Every file an operator writes is checked the same way: all problems collected at once, each one
`FILE:LINE: field: message`, and nothing acted on until the file is clean. This module holds the
parts those readers share so each reader only says what its fields mean.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError

from .errors import UserError


class ProblemsError(UserError):
    """All problems of one file; str() is one `FILE:LINE: field: message` per line."""

    prefix = ""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


def join(path: str, key: Any) -> str:
    """Dotted field name as the operator reads it: `roles.store.vip[1]`."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else str(key)


def kind(value: Any) -> str:
    """What a value is, in the operator's words (a mapping, a list, str ...)."""
    if isinstance(value, CommentedMap):
        return "a mapping"
    if isinstance(value, CommentedSeq):
        return "a list"
    return type(value).__name__


class Reader:
    """Walks a ruamel round-trip tree, collecting `(line, field, message)` problems instead of raising."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[tuple[int, str, str]] = []

    def problem(self, line: int, fld: str, msg: str) -> None:
        self.problems.append((line, fld, msg))

    @staticmethod
    def line_of(node: Any, key: Any = None) -> int:
        """1-based line of `key` in mapping `node` (or of item `key` in a sequence, or of node)."""
        try:
            if key is not None and isinstance(node, CommentedMap) and key in node:
                return node.lc.key(key)[0] + 1
            if key is not None and isinstance(node, CommentedSeq) and isinstance(key, int) and key < len(node):
                return node.lc.item(key)[0] + 1
            return node.lc.line + 1
        except (AttributeError, KeyError, TypeError, IndexError):
            return 1

    def mapping(self, node: Any, path: str, allowed: set[str] | None, line: int) -> CommentedMap | None:
        """`node` if it is a mapping (unknown keys reported when `allowed` is given), else None."""
        if not isinstance(node, CommentedMap):
            self.problem(line, path, f"must be a mapping, got {kind(node)}")
            return None
        if allowed is not None:
            for key in node:
                if key not in allowed:
                    self.problem(self.line_of(node, key), join(path, key), f"unknown key (allowed: {', '.join(sorted(allowed))})")
        return node

    def get(
        self,
        m: CommentedMap,
        key: str,
        path: str,
        typ: type | tuple[type, ...],
        *,
        required: bool = False,
        default: Any = None,
        check: Callable[[Any], str | None] | None = None,
    ) -> Any:
        """A typed value (ints are accepted as floats, bools never as numbers); `check` returns a message or None."""
        fld = join(path, key)
        if key not in m or m[key] is None:
            if required:
                self.problem(self.line_of(m), fld, "is required")
            return default
        value = m[key]
        line = self.line_of(m, key)
        if typ is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if isinstance(value, bool) and typ is not bool or not isinstance(value, typ):
            names = typ.__name__ if isinstance(typ, type) else " or ".join(t.__name__ for t in typ)
            self.problem(line, fld, f"must be {names}, got {kind(value)} {value!r}")
            return default
        if check is not None:
            msg = check(value)
            if msg:
                self.problem(line, fld, msg)
                return default
        return value

    def value(self, m: CommentedMap, key: str, path: str, conv: Callable[[Any], Any], *,
              required: bool = False, default: Any = None) -> Any:
        """A value through a converter that raises ValueError/TypeError with the message to report."""
        fld = join(path, key)
        if key not in m or m[key] is None:
            if required:
                self.problem(self.line_of(m), fld, "is required")
            return default
        try:
            return conv(m[key])
        except (ValueError, TypeError) as err:
            self.problem(self.line_of(m, key), fld, str(err))
            return default

    def render(self) -> list[str]:
        return [f"{self.source}:{line}: {one_line(fld)}: {one_line(msg)}"
                for line, fld, msg in sorted(self.problems, key=lambda p: p[0])]


#: what str.splitlines() breaks at (a quoted YAML key or value may hold any of them) -> its escape
_LINE_BREAKS: dict[int, str] = {ord(c): c.encode("unicode_escape").decode("ascii")
                                for c in "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"}


def one_line(text: str) -> str:
    """`text` with its line breaks escaped: one problem is one line of the report, whatever the
    operator's keys and values hold."""
    return text.translate(_LINE_BREAKS)


def load_yaml(text: str, source: str, error: Callable[[list[str]], Exception] = ProblemsError) -> Any:
    """Parse YAML text into a round-trip tree (keeps line numbers); syntax errors name the line."""
    yaml = YAML(typ="rt")
    try:
        return yaml.load(text)
    except MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = mark.line + 1 if mark else 1
        raise error([f"{source}:{line}: (yaml): {' '.join(str(err.problem or err.context).split())}"]) from None
    except Exception as err:  # ruamel raises a few unmarked errors (e.g. duplicate keys, a NUL: ReaderError)
        pos = getattr(err, "position", None)  # ReaderError: a character index; its str() spans lines
        line = text.count("\n", 0, pos) + 1 if isinstance(pos, int) else 1
        raise error([f"{source}:{line}: (yaml): {' '.join((str(err).splitlines() or ['unreadable'])[0].split())}"]) from None


def read_text(path: str | Path, error: Callable[[list[str]], Exception] = ProblemsError) -> str:
    """A file's text; unreadable or non-UTF-8 files are a one-line error naming the file (and line)."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as err:
        raise UserError(f"{p}: cannot read: {err.strerror}") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        col = err.start - (raw.rfind(b"\n", 0, err.start) + 1) + 1
        raise error([f"{p}:{line}: (encoding): not UTF-8: byte 0x{raw[err.start]:02x} at column {col}"]) from None
