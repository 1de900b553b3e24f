"""Postfix instances for the lab: one config, queue, data directory and log per host.

Roles of the instances (what the mail path looks like):
* client   -- sends by MX (dnsmasq answers MX 10 relay1, MX 20 relay2); listens on loopback only.
* relay    -- accepts mail for the lab domain, routes it (transport_maps) to the store VIP, and
              hands what it cannot deliver to the fallback host (smtp_fallback_relay).
* fallback -- accepts mail for the lab domain, keeps a retry queue, delivers to the store VIP.
* store    -- delivers the lab domain to Maildir (one Maildir per mailbox) through our delivery
              agent (pipe(8) -> hacluster.spool.deliver: virtual(8)'s Maildir layout plus duplicate
              suppression, docs/spool.md); listens on all addresses, so it answers on the VIP as
              soon as the VIP is added.

Every service runs unchrooted (the config directory is not a chroot jail), and the log goes to
`maillog_file` (postlogd), which Postfix only allows under `maillog_file_prefixes`.
Postfix wants every `postfix -c DIR` directory listed in the default instance's
`alternate_config_directories` (setgid tools like postdrop check it): `register_config_dirs` adds a
marked block to /etc/postfix/main.cf and `unregister_config_dirs` removes exactly that block.
"""

from __future__ import annotations

import fcntl
import os
import pwd
import shutil
from pathlib import Path
from typing import Callable

from .state import LabOptions, LabPaths
from .topology import Host, LabPlan

SYSTEM_MAIN_CF = Path("/etc/postfix/main.cf")
MAIL_UID = 65534  # nobody: virtual(8) refuses uids below virtual_minimum_uid (100)
MAIL_GID = 65534

MASTER_CF = """\
# service type  private unpriv  chroot  wakeup  maxproc command + args  (hacluster lab: no chroot)
smtp      inet  n       -       n       -       -       smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


DELIVER_SERVICE = "hadeliver"


#: the modules the delivery agent runs (stdlib only), staged where its unprivileged user can read them
DELIVER_MODULES = ("spool/deliver.py", "spool/dedup.py")


def deliver_lib_files() -> dict[str, str]:
    """The staged copy of the delivery agent, path (relative to the lib dir) -> text: the package
    `hacluster.spool` with empty __init__ files and the agent's modules (DELIVER_MODULES). The
    namespace lab writes them locally (stage_deliver_lib); the Vagrant lab's stores get the same
    files over SSH (hacluster_lab.lab.machine_mail)."""
    import hacluster

    src = Path(hacluster.__file__).resolve().parent
    out = {"hacluster/__init__.py": "", "hacluster/spool/__init__.py": ""}
    out.update({f"hacluster/{mod}": (src / mod).read_text() for mod in DELIVER_MODULES})
    return out


def stage_deliver_lib(lib_dir: Path | str) -> Path:
    """Copy the delivery agent's modules into `lib_dir` (a package `hacluster.spool` with empty
    __init__ files) and make it world-readable; return the directory for PYTHONPATH.

    Why a copy: pipe(8) runs the agent as an unprivileged user, and the installed package may sit
    under a directory only root can enter (a checkout in /root, a venv under /root/.pyenv), where
    the import fails and every delivery is deferred."""
    lib = Path(lib_dir)
    (lib / "hacluster" / "spool").mkdir(parents=True, exist_ok=True)
    for rel, text in deliver_lib_files().items():
        (lib / rel).write_text(text)
    for d, _dirs, files in os.walk(lib):
        os.chmod(d, 0o755)
        for f in files:
            os.chmod(os.path.join(d, f), 0o644)
    return lib


def deliver_python(lib_dir: Path | str, python: str | None = None) -> str:
    """The command that runs the delivery agent as an unprivileged user: the system python3 (the
    agent is stdlib-only; a venv's interpreter may sit under a directory only root can enter) with
    PYTHONPATH naming a staged copy of the agent's modules (stage_deliver_lib)."""
    import shutil

    exe = python or shutil.which("python3", path="/usr/bin:/bin") or "/usr/bin/python3"
    return f"/usr/bin/env PYTHONPATH={stage_deliver_lib(lib_dir)} {exe}"


def deliver_service(base: Path | str, log: Path | str, python: str | None = None,
                    user: str = "nobody", lib_dir: Path | str | None = None) -> str:
    """The master.cf entry of the store's delivery agent (pipe(8) running hacluster.spool.deliver
    as `user`, one recipient per call); pair with deliver_main_cf(). Used by the lab's stores and
    the integration tests' store instance, so both run the same service. The agent's modules are
    staged in `lib_dir` (default: beside the log, which `user` must reach anyway)."""
    lib = Path(lib_dir) if lib_dir is not None else Path(log).parent / "hacluster-deliver-lib"
    return deliver_entry(base, log, deliver_python(lib, python), user)


def deliver_entry(base: Path | str, log: Path | str, python_cmd: str, user: str = "nobody") -> str:
    """The `hadeliver` master.cf entry (two lines) running `python_cmd -m hacluster.spool.deliver`
    as `user` -- the one rendering of the service for both labs (the Vagrant lab's stores get it by
    `postconf -M`, hacluster_lab.lab.machine_mail)."""
    cmd = f"{python_cmd} -m hacluster.spool.deliver --base {base} --mailbox ${{user}} --log {log}"
    return (f"{DELIVER_SERVICE} unix  -       n       n       -       -       pipe\n"
            f"  flags=DRXu user={user} argv={cmd}\n")


def deliver_main_cf() -> dict[str, str]:
    """main.cf lines that route virtual mailbox delivery through the deliver_service() entry."""
    return {"virtual_transport": DELIVER_SERVICE, f"{DELIVER_SERVICE}_destination_recipient_limit": "1"}


def master_cf(listen: str = "smtp") -> str:
    """MASTER_CF with its smtpd listening on `listen` (a service name, or host:port for a
    loopback instance): the lab and the integration tests' instances run the same services."""
    return MASTER_CF.replace("smtp      inet", f"{listen:<9} inet", 1)

LAB_NETWORKS = "127.0.0.0/8 [::1]/128 192.0.2.0/24 198.51.100.0/24 203.0.113.0/24 [fd00::]/8"


def store_vip(plan: LabPlan) -> str | None:
    """The IPv4 VIP of the first store-tier role: where relays and the fallback send the domain."""
    for v in plan.vips:
        if v.address.version == 4 and v.tier == "store":
            return v.ip
    return None


def store_mail_base(host: Host, paths: LabPaths, opts: LabOptions) -> Path:
    """virtual_mailbox_base of a store as its own Postfix sees it (in spool mode shared: on the
    spool, mounted on the holder only)."""
    if opts.spool_mode == "shared":
        return paths.spool_mount(host.name) / "mail"
    return paths.shared_mail_base() if opts.shared_spool else paths.mail_base(host.name)


def common_params(domain: str, opts: LabOptions) -> dict[str, str]:
    """The main.cf settings every lab MTA shares, wherever its files live: the namespace lab's
    instances (main_cf) and the Vagrant lab's system Postfix (hacluster_lab.lab.machine_mail)."""
    return {
        "compatibility_level": "3.6",
        "mydomain": domain,
        "myorigin": "$myhostname",
        "mydestination": "",
        "inet_interfaces": "all",
        "inet_protocols": "all",
        "mynetworks": LAB_NETWORKS,
        "smtpd_banner": "$myhostname ESMTP hacluster-lab",
        "smtpd_peername_lookup": "no",  # the mail path under test is MX and VIP, not reverse DNS
        "biff": "no",
        "alias_maps": "",
        "alias_database": "",
        "local_recipient_maps": "",
        "smtputf8_enable": "no",
        "queue_run_delay": f"{opts.queue_run_delay_s}s",
        "minimal_backoff_time": f"{opts.minimal_backoff_s}s",
        "maximal_backoff_time": f"{opts.maximal_backoff_s}s",
        "smtp_connect_timeout": f"{opts.smtp_connect_timeout_s}s",
        "smtp_helo_timeout": f"{opts.smtp_stage_timeout_s}s",
        "smtp_mail_timeout": f"{opts.smtp_stage_timeout_s}s",
        "smtp_rcpt_timeout": f"{opts.smtp_stage_timeout_s}s",
        "smtp_data_init_timeout": f"{opts.smtp_stage_timeout_s}s",
        "smtp_quit_timeout": f"{opts.smtp_stage_timeout_s}s",
        "smtp_data_xfer_timeout": f"{opts.smtp_data_timeout_s}s",
        "smtp_data_done_timeout": f"{opts.smtp_data_timeout_s}s",
        "smtpd_timeout": f"{opts.smtpd_timeout_s}s",
        "smtp_address_preference": "ipv4",
        "smtpd_relay_restrictions": "permit_mynetworks, reject_unauth_destination",
    }


def route_params(kind: str, domain: str, fallbacks: list[str], conf_dir: str, mail_base: str) -> dict[str, str]:
    """The mail path by host kind -- one source for both labs: relays relay the domain to the
    store VIP (transport_maps) with the fallback hosts as smtp_fallback_relay; the fallback keeps
    a retry queue for the VIP; stores deliver the domain to Maildir under mail_base (virtual(8)).
    `fallbacks` are the fallback hosts' addresses; `conf_dir` holds the transport/vmailbox maps."""
    if kind == "client":
        return {"inet_interfaces": "loopback-only"}
    if kind in ("relay", "fallback"):
        out = {"relay_domains": domain, "transport_maps": f"texthash:{conf_dir}/transport"}
        if kind == "relay" and fallbacks:
            out["smtp_fallback_relay"] = ", ".join(f"[{a}]:25" for a in fallbacks)
        if kind == "fallback":
            out["smtp_fallback_relay"] = ""  # the last resort keeps its queue; no loop back
        return out
    if kind == "store":
        return {
            "virtual_mailbox_domains": domain,
            "virtual_mailbox_base": mail_base,
            "virtual_mailbox_maps": f"texthash:{conf_dir}/vmailbox",
            "virtual_uid_maps": f"static:{MAIL_UID}",
            "virtual_gid_maps": f"static:{MAIL_GID}",
            "virtual_minimum_uid": "100",
        }
    return {}


def transport_text(domain: str, vip: str) -> str:
    """transport_maps of relays and the fallback: the domain goes to the store VIP."""
    return f"{domain} smtp:[{vip}]:25\n"


def vmailbox_text(domain: str, mailboxes: tuple[str, ...]) -> str:
    """virtual_mailbox_maps of the stores: one Maildir (trailing slash) per mailbox."""
    return "".join(f"{m}@{domain} {m}/\n" for m in mailboxes)


def main_cf(host: Host, plan: LabPlan, paths: LabPaths, opts: LabOptions) -> str:
    """main.cf for one lab host, by its kind (client, relay, fallback, store)."""
    name = host.name
    lines = {
        **common_params(plan.domain, opts),
        "queue_directory": str(paths.postfix_queue(name)),
        "data_directory": str(paths.postfix_data(name)),
        "myhostname": f"{name}.{plan.domain}",
        "maillog_file": str(paths.maillog(name)),
        "maillog_file_prefixes": f"/var, /dev/stdout, {paths.root}",
    }
    fallbacks = [h.address for h in plan.hosts if h.kind == "fallback"]
    base = store_mail_base(host, paths, opts)
    if host.kind == "store" and opts.spool_mode == "shared":
        # Maildir and queue on the spool, which exists at these paths on the holder only
        lines["queue_directory"] = str(paths.spool_mount(name) / "postfix-queue")
    if host.kind == "client":
        lines["myhostname"] = f"client.{plan.domain}"
    lines.update(route_params(host.kind, plan.domain, fallbacks, str(paths.postfix_conf(name)), str(base)))
    if host.kind == "store":
        lines.update(deliver_main_cf())  # the domain through our delivery agent (duplicate suppression)
    return "".join(f"{k} = {v}\n" for k, v in lines.items())


def write_instance(host: Host, plan: LabPlan, paths: LabPaths, opts: LabOptions) -> Path:
    """Create config, queue, data and mail directories for one host; return the config dir."""
    name = host.name
    conf = paths.postfix_conf(name)
    conf.mkdir(parents=True, exist_ok=True)
    paths.postfix_queue(name).mkdir(parents=True, exist_ok=True)
    data = paths.postfix_data(name)
    data.mkdir(parents=True, exist_ok=True)
    pf = pwd.getpwnam("postfix")
    os.chown(data, pf.pw_uid, pf.pw_gid)
    # the maillog belongs to mail_owner, not root: postsuper drops to mail_owner before its first
    # log line and, while postlogd is not running yet (`postfix start`), opens maillog_file itself;
    # a root-only file made the start fatal after a takeover (a warning about the dead holder's
    # half-received incoming/ file on a shared queue), so the role never came up. postlogd (root)
    # appends to it either way.
    maillog = paths.maillog(name)
    maillog.touch()
    os.chown(maillog, pf.pw_uid, pf.pw_gid)
    (conf / "main.cf").write_text(main_cf(host, plan, paths, opts))
    master = MASTER_CF
    if host.kind == "store":
        log = paths.maillog(name).with_name(f"{name}-deliver.log")
        log.touch()
        os.chown(log, MAIL_UID, MAIL_GID)
        master += deliver_service(store_mail_base(host, paths, opts), log)
    (conf / "master.cf").write_text(master)
    vip = store_vip(plan)
    if host.kind in ("relay", "fallback") and vip:
        (conf / "transport").write_text(transport_text(plan.domain, vip))
    if host.kind == "store":
        (conf / "vmailbox").write_text(vmailbox_text(plan.domain, opts.mailboxes))
        base = paths.shared_mail_base() if opts.shared_spool else paths.mail_base(name)
        base.mkdir(parents=True, exist_ok=True)
        os.chown(base, MAIL_UID, MAIL_GID)
        own = paths.mail_base(name)
        if opts.shared_spool and not own.exists() and not own.is_symlink():
            # the store's own mail dir is the shared tree: what the spec's spool check
            # ({state_dir}/mail) watches is then where this store really delivers
            own.parent.mkdir(parents=True, exist_ok=True)
            own.symlink_to(base)
        if opts.spool_mode == "shared":
            dev = paths.spool_device
            (dev / "postfix-queue").mkdir(parents=True, exist_ok=True)
            (dev / "mail").mkdir(parents=True, exist_ok=True)
            os.chown(dev / "mail", MAIL_UID, MAIL_GID)
            paths.spool_mount(name).mkdir(parents=True, exist_ok=True)
    return conf


def postfix_cmd(conf: Path, verb: str) -> list[str]:
    return ["postfix", "-c", str(conf), verb]


def master_pid(queue_dir: Path) -> int | None:
    """The instance's master pid from its pid file, if that process is alive."""
    try:
        pid = int((queue_dir / "pid" / "master.pid").read_text().split()[0])
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError, IndexError):
        return None


# --------------------------------------------------------------------------- the system main.cf


CREATED_HEADER = ("# created by hacluster: no main.cf existed (Debian's \"No configuration\"); "
                  "removed again with the last hacluster block")


def _markers(state_dir: Path) -> tuple[str, str]:
    return (f"# BEGIN hacluster-lab {state_dir} (added by `hacluster lab up`, removed by `lab down`)",
            f"# END hacluster-lab {state_dir}")


def _strip_block(text: str, state_dir: Path) -> str:
    begin, end = _markers(state_dir)
    out, skipping = [], False
    for line in text.splitlines(keepends=True):
        if line.rstrip("\n") == begin:
            skipping = True
            continue
        if skipping and line.rstrip("\n") == end:
            skipping = False
            continue
        if not skipping:
            out.append(line)
    return "".join(out)


def _current_alternates(text: str) -> list[str]:
    """alternate_config_directories as the text sets it (last assignment wins, as in Postfix)."""
    value = ""
    for line in text.splitlines():
        if line.startswith("alternate_config_directories") and "=" in line:
            value = line.split("=", 1)[1].strip()
    return [v for v in value.replace(",", " ").split() if v]


def _block_dirs(text: str, state_dir: Path) -> list[str]:
    """The directories our block added: its list minus what the text before it already set.
    (Each block restates the whole list, since Postfix takes the last assignment.)"""
    begin, end = _markers(state_dir)
    head, sep, rest = text.partition(begin + "\n")
    if not sep:
        return []
    before = _current_alternates(head)
    return [d for d in _current_alternates(rest.partition(end)[0]) if d not in before]


def _forget_dirs(text: str, dirs: list[str]) -> str:
    """Drop `dirs` from the lists of the other hacluster blocks (later blocks restated ours)."""
    if not dirs:
        return text
    out, inside = [], False
    for line in text.splitlines(keepends=True):
        if line.startswith("# BEGIN hacluster-lab "):
            inside = True
        elif line.startswith("# END hacluster-lab "):
            inside = False
        elif inside and line.startswith("alternate_config_directories") and "=" in line:
            kept = [d for d in _current_alternates(line) if d not in dirs]
            line = f"alternate_config_directories = {', '.join(kept)}\n"
        out.append(line)
    return "".join(out)


def _only_our_header(text: str) -> bool:
    """A main.cf we created that holds nothing but our header: the file did not exist before."""
    return [ln for ln in text.splitlines() if ln.strip()] == [CREATED_HEADER]


def _open_main_cf(main_cf: Path, create: bool) -> tuple[int, bool] | None:
    """(fd, created) of main.cf opened for editing; None when absent and not `create`."""
    while True:
        try:
            return os.open(main_cf, os.O_RDWR), False
        except FileNotFoundError:
            if not create:
                return None
        try:
            return os.open(main_cf, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644), True
        except FileExistsError:
            continue  # somebody else created it meanwhile: edit theirs


def _edit_locked(main_cf: Path, edit: Callable[[str], str], create: bool = False) -> None:
    """Edit main.cf under an flock. `create`: an absent file is created with CREATED_HEADER;
    an edit that leaves only that header removes the file again (absent is restored as absent)."""
    while True:
        opened = _open_main_cf(main_cf, create)
        if opened is None:
            return
        fd, created = opened
        with os.fdopen(fd, "r+") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                try:
                    same = os.path.samestat(os.fstat(f.fileno()), os.stat(main_cf))
                except FileNotFoundError:
                    same = False
                if not same:
                    continue  # removed (or replaced) while we waited for the lock: open afresh
                text = f.read()
                if created:
                    text = CREATED_HEADER + "\n"
                new = edit(text)
                if _only_our_header(new):
                    main_cf.unlink(missing_ok=True)  # still under the lock: waiters re-open
                elif new != text or created:
                    f.seek(0)
                    f.write(new)
                    f.truncate()
                return
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)


def register_config_dirs(dirs: list[Path], state_dir: Path, backup: Path | None = None,
                         main_cf: Path = SYSTEM_MAIN_CF) -> None:
    """Add our block (marked with `state_dir`) to the system main.cf, after saving the original
    bytes to `backup`. Postfix's setgid tools and the OCF postfix agent check the list, so an
    absent main.cf (Debian's "No configuration") is created, and removed again by unregister."""
    main_cf.parent.mkdir(parents=True, exist_ok=True)
    if backup is not None and not backup.exists() and main_cf.exists():
        shutil.copy2(main_cf, backup)

    def edit(text: str) -> str:
        base = _strip_block(text, state_dir)
        begin, end = _markers(state_dir)
        value = ", ".join([*_current_alternates(base), *(str(d) for d in dirs)])
        sep = "" if base.endswith("\n") or not base else "\n"
        return f"{base}{sep}{begin}\nalternate_config_directories = {value}\n{end}\n"

    _edit_locked(main_cf, edit, create=True)


def unregister_config_dirs(state_dir: Path, backup: Path | None = None, main_cf: Path = SYSTEM_MAIN_CF) -> bool:
    """Remove our block; byte-exact restore from `backup` when nothing else changed meanwhile,
    and remove the file when we created it and no other block is left.
    Works without the backup (crash recovery): the block is found by its markers."""
    if not main_cf.exists():
        return False
    changed = False

    def edit(text: str) -> str:
        nonlocal changed
        new = _forget_dirs(_strip_block(text, state_dir), _block_dirs(text, state_dir))
        if backup is not None and backup.exists():
            orig = backup.read_text()
            if _strip_block(orig, state_dir) == new:
                new = orig
        changed = new != text
        return new

    _edit_locked(main_cf, edit)
    return changed


# --------------------------------------------------------------------------- where mail lands


def mail_stores(plan: LabPlan, paths: LabPaths, opts: LabOptions) -> dict[str, Path]:
    """Store host -> its Maildir base as seen from outside the namespaces (for audits). In spool
    mode shared every store reads the spool device (the holder's bind mount is private to its
    agent's mount namespace)."""
    def base(name: str) -> Path:
        if opts.spool_mode == "shared":
            return paths.spool_device / "mail"
        return paths.shared_mail_base() if opts.shared_spool else paths.mail_base(name)
    return {h.name: base(h.name) for h in plan.of_kind("store")}


def queue_dirs(plan: LabPlan, paths: LabPaths, opts: LabOptions) -> dict[str, Path]:
    """Every lab Postfix instance -> its queue_directory as seen from outside the namespaces
    (one entry for the shared spool's queue, which every store uses in turn)."""
    out = {h.name: paths.postfix_queue(h.name) for h in plan.of_kind("client", "relay", "fallback")}
    stores = [h.name for h in plan.of_kind("store")]
    if opts.spool_mode == "shared":
        out["spool"] = paths.spool_device / "postfix-queue"
    else:
        out.update({n: paths.postfix_queue(n) for n in stores})
    return out


def with_spool(spec_text: str, mode: str, role: str = "store", **params: object) -> str:
    """The spec text with a `spool` resource first in `role`'s resources (spool -> MTA -> VIP),
    laid out for the lab (pair with LabOptions(spool_mode=mode)): shared = the lab's spool device
    bind-mounted at {state_dir}/spool with the Maildir and the Postfix queue on it; mirrored =
    {state_dir}/mail replicated to the other stores. `params` add or override resource params."""
    from io import StringIO

    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedMap

    if mode not in ("shared", "mirrored"):
        raise ValueError(f"spool mode {mode!r}: shared or mirrored")
    yaml = YAML(typ="rt")
    root = yaml.load(spec_text)
    res = CommentedMap(type="spool", name="spool", mode=mode)
    if mode == "shared":
        res.update(device="{state_dir}/../../spool-dev", path="{state_dir}/spool", subdirs=["mail", "postfix-queue"])
    else:
        res.update(path="{state_dir}/mail", scan_interval_s=1.0)
    res.update(params)
    resources = root["roles"][role]["resources"]
    resources[:] = [r for r in resources if r.get("type") != "spool"]
    resources.insert(0, res)
    # only the holder runs the store MTA: shared, because the queue is on the holder's spool;
    # mirrored, because a returning node's leftover queue is drained to the holder (not delivered
    # into a Maildir nobody reads), which needs the instance stopped there
    root["roles"][role].pop("run_on_standby", None)
    # the tier's health checks that assumed an MTA and a Maildir on every store (the embedded lab
    # spec's): no queue check (a standby's MTA is stopped: its queue cannot be listed), and in
    # shared mode no spool check on {state_dir}/mail (the spool is mounted on the holder only;
    # the spool resource's own monitor probes it there)
    tier = root["roles"][role].get("tier")
    checks = (root.get("health") or {}).get(tier)
    if checks:
        drop = {"queue"} | ({"spool"} if mode == "shared" else set())
        checks[:] = [c for c in checks if c.get("check") not in drop]
    out = StringIO()
    yaml.dump(root, out)
    return out.getvalue()


def with_block_spool(spec_text: str, state_dir: str | Path, fencing: bool = True, role: str = "store") -> str:
    """with_spool(mode shared) on the lab's loop device (pair with LabOptions(spool_mode="shared",
    spool_block_mb=N)): the spool resource requires fencing, and the spec gets a `fence:` section
    with `fence_hacluster_lab` for every store -- or `fencing: self-only` with fencing=False (to
    measure what fencing costs, and what a frozen host does without it)."""
    import sys

    text = with_spool(spec_text, "shared", role, device="{state_dir}/../../spool-blk", require_fencing=True)
    if not fencing:
        return text + "\nfencing: self-only\n"
    agent = shutil.which("fence_hacluster_lab") or str(Path(sys.executable).parent / "fence_hacluster_lab")
    stores = [n["name"] for n in _yaml_nodes(text) if n.get("tier") == "store"]
    lines = [f"    {n}: {{agent: {agent}, params: {{plug: {n}, lab_state: {state_dir}}}}}" for n in stores]
    return text + "\nfence:\n  timeout_s: 20\n  nodes:\n" + "\n".join(lines) + "\n"


def _yaml_nodes(text: str) -> list[dict]:
    from ruamel.yaml import YAML

    return list(YAML(typ="safe").load(text).get("nodes") or [])
