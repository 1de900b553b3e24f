"""Dovecot for the lab's stores (and the tests): IMAP and POP3 over the Maildirs Postfix's
virtual(8) delivers into (`{mail_base}/{mailbox}/`, standard Maildir), so mail accepted on the
store VIP can be read back over IMAP/POP3 through the VIP, before and after a failover.

One instance per store, with its own base dir, config and log; started in the store's network
namespace with `dovecot -F -c CONF` (foreground: the lab keeps the process, no pid-file games).
Every user logs in with the lab password; the userdb maps it to its Maildir with the mail uid.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PASSWORD = "lab-secret"  # every lab mailbox; never used outside the lab's namespaces


@dataclass(frozen=True)
class DovecotPorts:
    imap: int = 143
    imaps: int = 993
    pop3: int = 110
    pop3s: int = 995


def dovecot_conf(base: Path, listen: str, mail_base: Path, uid: int, gid: int, cert: Path, key: Path,
                 ports: DovecotPorts = DovecotPorts()) -> str:
    """The whole configuration of one instance (no includes of /etc/dovecot: nothing of the host's)."""
    return f"""\
base_dir = {base}/run
state_dir = {base}/state
log_path = {base}/dovecot.log
info_log_path = {base}/dovecot.log
protocols = imap pop3
listen = {listen}
ssl = yes
ssl_cert = <{cert}
ssl_key = <{key}
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:{mail_base}/%n
mail_uid = {uid}
mail_gid = {gid}
first_valid_uid = 1
first_valid_gid = 1
default_internal_user = dovecot
default_login_user = dovenull
passdb {{
  driver = static
  args = password={PASSWORD}
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={mail_base}/%n
}}
service imap-login {{
  inet_listener imap {{
    port = {ports.imap}
  }}
  inet_listener imaps {{
    port = {ports.imaps}
    ssl = yes
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    port = {ports.pop3}
  }}
  inet_listener pop3s {{
    port = {ports.pop3s}
    ssl = yes
  }}
}}
service anvil {{
  unix_listener anvil {{
    mode = 0600
  }}
}}
"""


def write_instance(base: Path, listen: str, mail_base: Path, uid: int, gid: int, cert: Path, key: Path,
                   ports: DovecotPorts = DovecotPorts()) -> Path:
    """Create the base dir and its config; return the config file."""
    for sub in ("run", "state"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    conf = base / "dovecot.conf"
    conf.write_text(dovecot_conf(base, listen, mail_base, uid, gid, cert, key, ports))
    return conf


def dovecot_cmd(conf: Path) -> list[str]:
    return ["dovecot", "-F", "-c", str(conf)]


def probe_message(to: str, sender: str, subject: str, body: str = "hacluster lab test\n") -> tuple[str, str]:
    """(token, message) for a probe found later by its token (in a header and the Subject)."""
    token = uuid.uuid4().hex[:16]
    return token, f"From: {sender}\nTo: {to}\nSubject: {subject} {token}\nX-Hacluster-Lab: {token}\n\n{body}"


def read_inbox(server: str, user: str, token: str | None = None, port: int = 993) -> dict[str, Any]:
    """Log in over IMAP with TLS (the lab's self-signed certificate, not verified) as `user` with
    the lab password and count its INBOX: {"messages", "found" (the probe carrying `token`),
    "server", "user", "t_mono", "seconds"} or {"error": why}."""
    import imaplib
    import ssl

    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    t = time.monotonic()
    try:
        with imaplib.IMAP4_SSL(server, port, ssl_context=ctx, timeout=10) as m:
            m.login(user, PASSWORD)
            typ, data = m.select("INBOX", readonly=True)
            if typ != "OK":
                return {"error": f"SELECT INBOX: {typ} {data!r}"}
            found = None
            if token is not None:
                typ, hits = m.search(None, "HEADER", "X-Hacluster-Lab", token)
                found = typ == "OK" and bool(hits and hits[0].split())
            return {"messages": int(data[0] or 0), "found": found, "server": server, "user": user, "t_mono": t,
                    "seconds": round(time.monotonic() - t, 3)}
    except (OSError, imaplib.IMAP4.error, ssl.SSLError) as err:
        return {"error": f"{type(err).__name__}: {err}"}
