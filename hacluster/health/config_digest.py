"""`check: config_digest`: digests of the mail configuration that every node of a tier must share.

Both stores must carry the same accounts, maps and Postfix settings (seed 000): after a failover
to a store whose `virtual_mailbox_maps` lacks an account, mail for it bounces with 5.1.1. This
probe hashes each Postfix parameter (`postconf -n`, one digest per parameter, so a difference is
named: "store2 differs: virtual_mailbox_maps") and each listed file; the result goes out in the
heartbeat like every check's, and hacluster/drift.py compares the nodes of a tier.

    - {check: config_digest, postconf: true, config_dir: /etc/postfix,
       files: [/etc/postfix/virtual, /etc/dovecot/users], exclude: [smtp_helo_name]}

`postconf: true` takes every explicitly set parameter but those that are per host by nature
(HOST_PARAMS: own name, own addresses, own directories); a list takes just those parameters.
The check itself is healthy whatever it finds; only a configuration it cannot read is a warning.
"""

from __future__ import annotations

import hashlib
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from .checks import CONFIG_DIGEST, CheckResult, result

#: parameters that differ between hosts by design: never compared under `postconf: true`
HOST_PARAMS = frozenset({
    "config_directory", "queue_directory", "data_directory", "meta_directory", "shlib_directory",
    "myhostname", "inet_interfaces", "proxy_interfaces", "smtp_bind_address", "smtp_bind_address6",
    "smtp_helo_name", "multi_instance_name", "multi_instance_directories", "multi_instance_enable",
    "import_environment", "syslog_name", "maillog_file",
})


def _h(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:12]


def parse_postconf(text: str) -> dict[str, str]:
    """`postconf -n` lines `name = value` (continuation lines start with white space)."""
    out: dict[str, str] = {}
    last = None
    for line in text.splitlines():
        if line[:1] in (" ", "\t") and last is not None:
            out[last] += " " + line.strip()
            continue
        name, sep, value = line.partition("=")
        if sep:
            last = name.strip()
            out[last] = value.strip()
    return out


@dataclass(frozen=True)
class ConfigDigestProbe:
    postconf: bool | tuple[str, ...] = False
    files: tuple[str, ...] = ()
    config_dir: str | None = None
    exclude: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()  # each file's name as the spec writes it ({state_dir}/virtual): the
    # key peers compare, where the expanded path may differ per node
    name: str = CONFIG_DIGEST

    def __call__(self, timeout_s: float) -> CheckResult:
        t0 = time.monotonic()
        digests: dict[str, str] = {}
        problems: list[str] = []
        if self.postconf:
            argv = ["postconf", "-n"] + (["-c", self.config_dir] if self.config_dir else [])
            try:
                out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s)
                if out.returncode != 0:
                    problems.append(f"postconf: {(out.stderr.strip().splitlines() or ['exit ' + str(out.returncode)])[-1]}")
                params = parse_postconf(out.stdout) if out.returncode == 0 else {}
            except (OSError, subprocess.TimeoutExpired) as err:
                problems.append(f"postconf: {err}")
                params = {}
            wanted = set(self.postconf) if isinstance(self.postconf, tuple) else None
            for k, v in params.items():
                if (wanted is None and k not in HOST_PARAMS and k not in self.exclude) or (wanted and k in wanted):
                    digests[k] = _h(v.encode())
            for k in sorted(wanted or ()):
                digests.setdefault(k, "unset")
        for i, f in enumerate(self.files):
            key = self.labels[i] if i < len(self.labels) else f
            try:
                digests[key] = _h(Path(f).read_bytes())
            except OSError as err:
                digests[key] = "unreadable"
                problems.append(f"{f}: {err.strerror or err}")
        whole = _h("\n".join(f"{k}={v}" for k, v in sorted(digests.items())).encode())
        detail = "; ".join(problems) if problems else f"{len(digests)} item(s), digest {whole}"
        if self.postconf and any(p.startswith("postconf:") for p in problems):
            # postconf failed or timed out (a busy host): this node's configuration is unknown,
            # not different -- no digests, so peers claim no drift until the next probe
            return result(self.name, "warn", detail, time.monotonic() - t0, ok=True, digest=None, digests=None)
        return result(self.name, "warn" if problems else "ok", detail, time.monotonic() - t0, ok=True,
                      digest=whole, digests=digests)
