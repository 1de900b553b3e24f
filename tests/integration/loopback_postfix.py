"""A small real Postfix on loopback for the operator-side integration tests (live queues, metrics,
notifications): its own config/queue/data directories under /var/tmp, started with
`postfix -c DIR start` (root needs no `alternate_config_directories`), smtpd on 127.0.0.1:PORT.

Two kinds: `deliver_domain=None` keeps every message in the queue (relayhost [127.0.0.1]:1 where
nothing listens: mail defers and never leaves the host); `deliver_domain="lab.example"` delivers
that domain's mail into one Maildir (`maildir`), so a test can read what arrived.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from hacluster_lab.lab.postfix import deliver_main_cf, deliver_service

from .postfix_conf import MASTER_CF, main_cf


DELIVER_CF = """\
virtual_mailbox_domains = {domain}
virtual_mailbox_base = {base}/mail
virtual_mailbox_maps = static:inbox/
virtual_uid_maps = static:{uid}
virtual_gid_maps = static:{gid}
virtual_minimum_uid = 1
"""


@dataclass
class LoopbackPostfix:
    base: Path
    port: int

    @property
    def config_dir(self) -> str:
        return str(self.base / "etc")

    @property
    def maildir(self) -> Path:
        return self.base / "mail" / "inbox"

    def delivered(self) -> list[bytes]:
        """Messages delivered into the Maildir so far (new/ and cur/)."""
        out = []
        for sub in ("new", "cur"):
            d = self.maildir / sub
            if d.is_dir():
                out += [p.read_bytes() for p in sorted(d.iterdir())]
        return out

    def queue(self) -> list[dict]:
        out = subprocess.run(["postqueue", "-c", self.config_dir, "-j"], capture_output=True, text=True, timeout=30)
        return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]

    def delete_all(self) -> None:
        subprocess.run(["postsuper", "-c", self.config_dir, "-d", "ALL"], capture_output=True, timeout=30, check=True)

    def log(self) -> str:
        try:
            return (self.base / "maillog").read_text()[-3000:]
        except OSError:
            return ""

    def stop(self) -> None:
        subprocess.run(["postfix", "-c", self.config_dir, "abort"], capture_output=True, timeout=30)
        try:
            os.kill(int((self.base / "queue" / "pid" / "master.pid").read_text().strip()), signal.SIGKILL)
        except (OSError, ValueError):
            pass
        shutil.rmtree(self.base, ignore_errors=True)


def start_postfix(port: int, *, deliver_domain: str | None = None, hostname: str = "ho-test.example",
                  prefix: str = "ho-pf-", wrap: tuple[str, ...] = (), hadeliver: bool = False) -> LoopbackPostfix:
    """Start one instance listening on 127.0.0.1:port; the caller stops it (try/finally).
    `wrap` prefixes the start command (e.g. setpriv with the systemd unit's capabilities).
    `hadeliver`: deliver through the lab stores' delivery agent (pipe(8) -> hacluster.spool.deliver,
    as nobody, duplicate suppression) instead of virtual(8)."""
    base = Path(tempfile.mkdtemp(prefix=prefix, dir="/var/tmp"))
    base.chmod(0o755)  # the postfix user must traverse it
    for sub in ("etc", "queue", "data"):
        (base / sub).mkdir()
    shutil.chown(base / "data", "postfix")
    pf = LoopbackPostfix(base, port)
    main_text = main_cf(base, hostname)
    master_cf = MASTER_CF.format(port=port)
    if deliver_domain:
        pw = pwd.getpwnam("postfix")
        (base / "mail").mkdir()
        shutil.chown(base / "mail", pw.pw_uid, pw.pw_gid)
        main_text += DELIVER_CF.format(domain=deliver_domain, base=base, uid=pw.pw_uid, gid=pw.pw_gid)
        master_cf += "virtual   unix  -       n       n       -       -       virtual\n"
        if hadeliver:
            shutil.chown(base / "mail", "nobody", "nogroup")
            main_text += "".join(f"{k} = {v}\n" for k, v in deliver_main_cf().items())
            master_cf += deliver_service(base / "mail", base / "deliver.log")
            (base / "deliver.log").touch()
            shutil.chown(base / "deliver.log", "nobody", "nogroup")
    (base / "etc" / "main.cf").write_text(main_text)
    (base / "etc" / "master.cf").write_text(master_cf)
    try:
        out = subprocess.run([*wrap, "postfix", "-c", pf.config_dir, "start"], capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr + pf.log()
        end = time.monotonic() + 15
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    return pf
            except OSError:
                assert time.monotonic() < end, "smtpd never listened\n" + pf.log()
                time.sleep(0.05)
    except BaseException:
        pf.stop()
        raise
