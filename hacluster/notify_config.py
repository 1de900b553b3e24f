"""The spec's `notify:` section: `read_notify` validates it into a `NotifyConfig`.

Apart from hacluster/notify.py (which sends the mail and runs the scripts) so that reading a spec
imports nothing that talks to the network: `ha.py` imports the spec, and must stay pure.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from typing import Any

NOTIFY_KEYS = frozenset({"sender", "smtp_port", "smtp_timeout_s", "sendmail", "outbox", "scripts", "script_timeout_s"})
#: placeholders `outbox` may use, filled in per node by the agent
OUTBOX_FIELDS = frozenset({"state_dir", "node", "cluster"})


@dataclass(frozen=True)
class NotifyConfig:
    """The validated `notify:` section (see docs/operations.md); admin comes from `mail.admin`."""

    admin: str | None
    sender: str | None = None  # default hacluster@<mail.domain>
    smtp_port: int = 25
    smtp_timeout_s: float = 5.0
    sendmail: str | None = "/usr/sbin/sendmail"  # None: skip the local-MTA path
    outbox: str | None = "{state_dir}/notify-outbox"  # None: no outbox
    scripts: tuple[str, ...] = ()
    script_timeout_s: float = 10.0


def _address_problem(v: str) -> str | None:
    local, at, domain = v.rpartition("@")
    if not at or not local or not domain or any(c.isspace() or c in "<>," for c in v):
        return "must be one mail address like ops@example.org"
    return None


def _absolute(v: str) -> str | None:
    return None if v.startswith("/") else "must be an absolute path"


def _seconds(limit: float) -> Any:
    return lambda v: None if 0 < v <= limit else f"must be > 0 and <= {limit:g}"


def _outbox_problem(v: str) -> str | None:
    try:
        names = {f for _, f, _, _ in string.Formatter().parse(v) if f is not None}
    except ValueError as err:
        return f"bad placeholder: {err}"
    unknown = names - OUTBOX_FIELDS
    if unknown:
        return f"unknown placeholder {{{sorted(unknown)[0]}}} (known: {', '.join('{' + f + '}' for f in sorted(OUTBOX_FIELDS))})"
    return _absolute(v.replace("{state_dir}", "/"))


def read_notify(r: Any, root: Any, admin: str | None) -> NotifyConfig | None:
    """Validate the spec's `notify:` section with the spec reader `r` (problems collected as
    FILE:LINE: field: message, like every other section); None when there is no section.

    `r` is the spec's reader (hacluster.yamlread.Reader: `mapping`,
    `get`, `problem`, `line_of`); `root` the ruamel mapping of the whole file; `admin` the
    already-read `mail.admin`."""
    if "notify" not in root:
        return None
    line = r.line_of(root, "notify")
    body = root["notify"]
    if body is None:  # `notify:` with nothing under it: on, with the defaults
        from ruamel.yaml.comments import CommentedMap

        body = CommentedMap()
    m = r.mapping(body, "notify", set(NOTIFY_KEYS), line)
    if m is None:
        return None

    def get(key: str, typ: type, **kw: Any) -> Any:
        return r.get(m, key, "notify", typ, **kw)

    if admin is not None and _address_problem(admin):
        mail = root.get("mail")
        r.problem(r.line_of(mail, "admin") if mail is not None else line, "mail.admin", _address_problem(admin) or "")
    sender = get("sender", str, check=_address_problem)
    port = get("smtp_port", int, default=25, check=lambda v: None if 0 < v < 65536 else "must be 1..65535")
    smtp_timeout = get("smtp_timeout_s", float, default=5.0, check=_seconds(60))
    sendmail = NotifyConfig.sendmail
    if "sendmail" in m:
        sendmail = None if m["sendmail"] is None else r.get(m, "sendmail", "notify", str, check=_absolute)
    outbox = NotifyConfig.outbox
    if "outbox" in m:
        outbox = None if m["outbox"] is None else r.get(m, "outbox", "notify", str, check=_outbox_problem)
    scripts: list[str] = []
    seq = m.get("scripts")
    if seq is not None:
        if not isinstance(seq, list):
            r.problem(r.line_of(m, "scripts"), "notify.scripts", "must be a list of absolute paths")
        else:
            for i, item in enumerate(seq):
                fld = f"notify.scripts[{i}]"
                if not isinstance(item, str) or not item:
                    r.problem(r.line_of(seq, i), fld, f"must be a path, got {type(item).__name__} {item!r}")
                elif _absolute(item):
                    r.problem(r.line_of(seq, i), fld, f"{item}: notify scripts need an absolute path")
                else:
                    scripts.append(item)
    script_timeout = get("script_timeout_s", float, default=10.0, check=_seconds(300))
    if not admin and not scripts and not (isinstance(seq, list) and seq):
        r.problem(line, "notify", "nothing to notify: set mail.admin (where the mail goes) or notify.scripts")
    return NotifyConfig(admin, sender, port, smtp_timeout, sendmail, outbox, tuple(scripts), script_timeout)
