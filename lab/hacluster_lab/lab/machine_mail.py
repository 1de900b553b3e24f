"""The Vagrant lab's mail path on its machines, configured the way an operator would: `postconf -e`
and map files under /etc/postfix, over SSH with the deploy inventory's key (hacluster.deploy.remote).

The settings come from the namespace lab's renderers (hacluster_lab.lab.postfix: common_params,
route_params, transport_text, vmailbox_text) -- one source for the Postfix config of both labs:
relays relay the lab domain to the store VIP with the fallback host as smtp_fallback_relay, the
fallback keeps a retry queue for the VIP, the stores deliver to Maildir under /var/mail through the
namespace lab's delivery agent (the `hadeliver` pipe(8) service running hacluster.spool.deliver,
duplicate suppression included: postfix.deliver_entry, deliver_main_cf, deliver_lib_files). The client
machine runs the lab DNS (dnsmasq: MX records from hacluster_lab.lab.dns.mx_records, A records for
every machine), with no upstream, so no lookup leaves the lab.

Postfix runs as the system service on the relays and the client; on the stores and the fallback the
agent starts it (the spec's mta resource), so the system service is disabled there and a running
instance is reloaded.
"""

from __future__ import annotations

import shlex
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from hacluster.errors import UserError
from hacluster.deploy.inventory import Inventory, load_inventory
from hacluster.spec import ClusterSpec, load_spec
from .dns import mx_records
from .dovecot import dovecot_conf
from .postfix import (DELIVER_SERVICE, LAB_NETWORKS, MAIL_UID, MAIL_GID, common_params, deliver_entry, deliver_lib_files,
                      deliver_main_cf, route_params, transport_text, vmailbox_text)
from .state import LabOptions

CONF_DIR = "/etc/postfix"
MAIL_BASE = "/var/mail"
DELIVER_LIB = "/usr/local/lib/hacluster-deliver"  # the delivery agent's staged modules (world-readable)
DELIVER_LOG = "/var/log/hacluster-deliver.log"  # its outcome lines (written as MAIL_UID)
SYSTEM_PYTHON = "/usr/bin/python3"
DNS_CONF = "/etc/hacluster-lab/dnsmasq.conf"
DNS_UNIT = "/etc/systemd/system/hacluster-lab-dns.service"
IMAP_DIR = "/var/lib/hacluster-lab/dovecot"  # the stores' Dovecot (lab/dovecot.py): its base dir and TLS key
IMAP_CONF = "/etc/hacluster-lab/dovecot.conf"
IMAP_UNIT = "/etc/systemd/system/hacluster-lab-imap.service"
BOOT_WAIT_S = 120.0  # how long a machine's sshd may take to answer after `vagrant up` returned
AGENT_MANAGED = ("store", "fallback")  # kinds whose Postfix the agent starts (cluster.yml's mta resource)


@dataclass(frozen=True)
class MachineMail:
    """What one machine gets: main.cf settings, files (path -> text) and the commands after them."""

    host: str
    kind: str
    settings: dict[str, str] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    commands: tuple[str, ...] = ()

    def script(self) -> str:
        """One shell script that applies it (idempotent: the same run twice changes nothing more)."""
        parts = ["set -e"]
        for path, text in self.files.items():
            parts.append(f"mkdir -p {shlex.quote(str(Path(path).parent))}")
            parts.append(f"cat > {shlex.quote(path)}.tmp <<'HACLUSTER_EOF'\n{text}HACLUSTER_EOF\n"
                         f"mv {shlex.quote(path)}.tmp {shlex.quote(path)}")
        if self.settings:
            parts.append("postconf -e " + " ".join(shlex.quote(f"{k}={v}") for k, v in self.settings.items()))
        parts.extend(self.commands)
        return "\n".join(parts) + "\n"


def dnsmasq_conf(spec: ClusterSpec, inv: Inventory, listen: str) -> str:
    """The lab zone for the machines: MX by the relays' mx_preference, A for every machine and VIP."""
    d = spec.mail.domain
    lines = ["# hacluster Vagrant lab zone (hacluster lab mail-path)", "no-resolv", "no-hosts", "no-poll",
             "bind-interfaces", f"listen-address={listen}", f"local=/{d}/", "domain-needed", "cache-size=0",
             "user=root", "pid-file="]
    lines += [f"mx-host={d},{node}.{d},{pref}" for pref, node in mx_records(spec)]
    lines += [f"host-record={h.name}.{d},{h.address}" for h in sorted(inv.hosts.values(), key=lambda h: h.name)]
    for name, role in sorted(spec.roles.items()):
        lines += [f"address=/{name}.{d}/{v.address.ip}" for v in role.vips]
    return "\n".join(lines) + "\n"


DNS_UNIT_TEXT = f"""[Unit]
Description=hacluster lab DNS (MX records of the lab domain)
After=network.target

[Service]
ExecStart=/usr/sbin/dnsmasq --keep-in-foreground --conf-file={DNS_CONF}
Restart=on-failure

[Install]
WantedBy=multi-user.target
"""


def deliver_commands() -> list[str]:
    """A store's commands for the delivery agent: the `hadeliver` service in master.cf by
    `postconf -M` (the same entry the namespace lab writes), its staged modules readable by the
    unprivileged user it runs as, its log, and the Maildir base owned by that user."""
    entry = " ".join(deliver_entry(MAIL_BASE, DELIVER_LOG, f"/usr/bin/env PYTHONPATH={DELIVER_LIB} {SYSTEM_PYTHON}").split())
    return [
        "install -d -m 0755 /var/lib/hacluster",  # the raid check's mdstat sample goes here
        f"chmod -R a+rX {DELIVER_LIB}",
        f"touch {DELIVER_LOG} && chown {MAIL_UID}:{MAIL_GID} {DELIVER_LOG}",
        f"chown {MAIL_UID}:{MAIL_GID} {MAIL_BASE} && chmod 0775 {MAIL_BASE}",
        "postconf -M " + shlex.quote(f"{DELIVER_SERVICE}/unix={entry}"),
    ]


IMAP_UNIT_TEXT = f"""\
[Unit]
Description=hacluster lab: IMAP/POP3 (Dovecot) over the store's Maildirs, on every address (the VIP too)
After=network.target

[Service]
ExecStart=/usr/sbin/dovecot -F -c {IMAP_CONF}
Restart=on-failure

[Install]
WantedBy=multi-user.target
"""


def imap_commands(domain: str) -> list[str]:
    """A store's commands for Dovecot: its dirs, a self-signed certificate made on the machine (its
    key never leaves it), the lab's own unit instead of Debian's (masked in the image)."""
    cert, key = f"{IMAP_DIR}/cert.pem", f"{IMAP_DIR}/key.pem"
    return [
        f"install -d -m 0755 {IMAP_DIR}/run {IMAP_DIR}/state",
        f"[ -s {cert} ] || openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 "
        f"-subj /CN=mail.{domain} -keyout {key} -out {cert} 2>/dev/null",
        "systemctl daemon-reload", "systemctl enable -q hacluster-lab-imap", "systemctl restart hacluster-lab-imap",
    ]


def plan(spec: ClusterSpec, inv: Inventory, opts: LabOptions | None = None) -> list[MachineMail]:
    """Per machine, what the mail path needs. Raises UserError when the spec lacks a store VIP."""
    opts = opts or LabOptions()
    d = spec.mail.domain
    vip = next((str(v.address.ip) for r in spec.roles.values() if r.tier == "store" for v in r.vips
                if v.address.version == 4), None)
    if vip is None:
        raise UserError(f"{spec.source}: no IPv4 VIP on a store-tier role: the relays have nowhere to send mail", 2)
    fallbacks = [n.addresses[0].ip.compressed for n in spec.nodes.values() if n.tier == "fallback"]
    out: list[MachineMail] = []
    for h in sorted(inv.hosts.values(), key=lambda h: h.name):
        node = spec.nodes.get(h.var("node") or h.name)
        kind = node.tier if node is not None else ("client" if "client" in h.groups else "")
        if kind not in ("relay", "fallback", "store", "client"):
            continue  # ZooKeeper machines carry no mail
        settings = {**common_params(d, opts), "myhostname": f"{h.name}.{d}", "mynetworks": LAB_NETWORKS,
                    **route_params(kind, d, fallbacks, CONF_DIR, MAIL_BASE)}
        files: dict[str, str] = {}
        cmds: list[str] = []
        if kind in ("relay", "fallback"):
            files[f"{CONF_DIR}/transport"] = transport_text(d, vip)
        if kind == "store":
            files[f"{CONF_DIR}/vmailbox"] = vmailbox_text(d, opts.mailboxes)
            settings.update(deliver_main_cf())
            for rel, text in deliver_lib_files().items():
                files[f"{DELIVER_LIB}/{rel}"] = text
            cmds += deliver_commands()
            files[IMAP_CONF] = dovecot_conf(Path(IMAP_DIR), "*", Path(MAIL_BASE), MAIL_UID, MAIL_GID,
                                            Path(IMAP_DIR) / "cert.pem", Path(IMAP_DIR) / "key.pem")
            files[IMAP_UNIT] = IMAP_UNIT_TEXT
            cmds += imap_commands(d)
        if kind == "client":
            files[DNS_CONF] = dnsmasq_conf(spec, inv, h.address)
            files[DNS_UNIT] = DNS_UNIT_TEXT
            cmds += ["systemctl daemon-reload", "systemctl enable -q hacluster-lab-dns",
                     "systemctl restart hacluster-lab-dns"]
        if kind in AGENT_MANAGED:
            cmds += ["systemctl disable -q --now postfix >/dev/null 2>&1 || true",
                     "if postfix status >/dev/null 2>&1; then postfix reload || true; fi  # racing a stopping master"]
        else:
            cmds += ["systemctl enable -q postfix", "systemctl restart postfix"]
        cmds.append("postfix check")
        out.append(MachineMail(h.name, kind, settings, files, tuple(cmds)))
    return out


def apply(inv: Inventory, machines: list[MachineMail], boot_wait_s: float = BOOT_WAIT_S) -> dict[str, str]:
    """Run every machine's script over SSH, in parallel: host -> "ok" or the error's last lines.
    A machine whose sshd does not answer yet (a container still booting) is retried for up to
    boot_wait_s."""
    from hacluster.deploy.remote import Remote, RemoteError, require_ssh

    require_ssh("lab mail-path")

    def one(m: MachineMail) -> tuple[str, str]:
        r = Remote(inv.hosts[m.host])
        deadline = time.monotonic() + boot_wait_s
        try:
            while True:
                try:
                    r.open()
                    break
                except RemoteError as err:
                    if "cannot connect" not in str(err) or time.monotonic() > deadline:
                        raise
                    time.sleep(1.0)
            res = r.sh(m.script(), timeout=120)
            return m.host, "ok" if res.rc == 0 else f"failed: {res.tail()}"
        except RemoteError as err:
            return m.host, f"failed: {err}"
        finally:
            r.close()

    with ThreadPoolExecutor(max_workers=max(1, len(machines))) as pool:
        return dict(pool.map(one, machines))


def configure(inventory: str | Path, dry_run: bool = False) -> tuple[list[MachineMail], dict[str, str]]:
    """Load the inventory and its spec, plan, and (unless dry_run) apply."""
    inv = load_inventory(inventory)
    spec_path = next((h.var("spec") for h in inv.hosts.values() if h.var("spec")), None)
    if not spec_path:
        raise UserError(f"{inventory}: no `spec` var: the mail path is rendered from the cluster spec", 2)
    machines = plan(load_spec(spec_path), inv)
    return machines, ({} if dry_run else apply(inv, machines))
