"""The VM lab (vagrant/) as a drill target: SSH (Fabric, the deploy key) and the agents' REST API.

The host is `.1` on every lab network (vagrant/README.md), so it reaches every VM at its lab
address: ZooKeeper's `srvr` and the agents' `/status` directly, everything else over SSH as
root with the inventory's key. Faults map to VM operations:

  power-off / power-on      `vagrant halt --force NAME` / `vagrant up NAME` (a real power cut)
  kill-agent, freeze, thaw  `systemctl kill -s KILL|STOP|CONT hacluster-agent`
  restart-agent             `systemctl restart hacluster-agent` (SIGTERM hand-off, then start)
  kill-mta                  `systemctl kill -s KILL postfix@-`
  isolate, partition, heal  nft tables on the VM's lab interface only (eth1): SSH on the
                            management NIC (eth0) keeps working, so heal can reach it

A playbook's `spec:` variant (failsafe) is deployed with `hacluster deploy` before its drill and
cluster.yml again after the last one (use_spec): the way an operator changes the cluster.

The invariant monitor is a poller here (every POLL_S over SSH: `ip -j addr` on the role's
candidates), much coarser than the namespace lab's 5 ms netlink sampler; the report says so.
`open()` first checks that every VM answers on port 22 and fails with one clear line if not.
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from hacluster.errors import UserError
from hacluster.spec import load_spec
from . import samples
from .spool_fill import fill_result, fill_script
from .target import FILL_NAME, MonitorData, RoleInfo, Target, json_answer

POLL_S = 0.25
CONNECT_TIMEOUT_S = 2.0
AGENT = "hacluster-agent"
LAB_IFACE = "eth1"


def reachable(hosts: dict[str, str], port: int = 22, timeout_s: float = CONNECT_TIMEOUT_S) -> dict[str, str]:
    """name -> why it is not reachable (empty dict: all answer). Parallel, bounded by timeout_s."""

    def probe(item: tuple[str, str]) -> tuple[str, str | None]:
        name, addr = item
        try:
            with socket.create_connection((addr, port), timeout=timeout_s):
                return name, None
        except OSError as err:
            return name, f"{addr}:{port}: {err.strerror or err}"

    with ThreadPoolExecutor(max_workers=max(1, len(hosts))) as pool:
        return {n: why for n, why in pool.map(probe, hosts.items()) if why}


def _table(name: str, input_rule: str, output_rule: str) -> str:
    """An nft table dropping what `input_rule`/`output_rule` match, one statement a line (nft
    wants a separator between the chains of a table)."""
    hook = "type filter hook {0} priority -200;"
    return (f"table inet {name} {{\n  chain input {{\n    {hook.format('input')}\n    {input_rule}\n  }}\n"
            f"  chain output {{\n    {hook.format('output')}\n    {output_rule}\n  }}\n}}\n")


#: spec keys a playbook may change (`spec:`) that the VM lab deploys (use_spec)
VARIANT_KEYS = ("failsafe",)
VARIANT_INVENTORY = ".inventory-variant.yml"  # beside inventory.yml: its relative paths mean the same
DEPLOY_TIMEOUT_S = 600.0


class VagrantTarget(Target):
    name = "vagrant"

    def __init__(self, vagrant_dir: str | Path) -> None:
        from hacluster.deploy.inventory import load_inventory

        self.dir = Path(vagrant_dir)
        self.inventory = load_inventory(self.dir / "inventory.yml")
        self.spec = load_spec(self.dir / "cluster.yml")
        self.addr = {h.name: h.address for h in self.inventory.hosts.values()}
        self._conns: dict[str, Any] = {}
        self._mon: threading.Thread | None = None
        self._mon_stop = threading.Event()
        self._mon_data = MonitorData()
        self._last: dict[str, list[str]] = {}
        self._proc: subprocess.Popen | None = None
        self._subs: list[Any] = []
        self._off: set[str] = set()
        self._own = (self.dir / "cluster.yml").read_text()
        self._deployed = self._own  # the spec text the agents run: cluster.yml, as `vagrant up` deployed it
        self._tier_text: dict[str, str] = {}  # tier -> the spec its machines run when a placement step changed it

    # ------------------------------------------------------------------ lifecycle

    def cannot_run(self, pb: Any) -> str | None:
        """The VM lab runs the deployed cluster.yml on machines it does not rebuild per drill; spec
        variants it can deploy (VARIANT_KEYS) are rolled out by use_spec."""
        if pb.lab:
            setup = ", ".join(f"{k}: {v}" for k, v in pb.lab)
            return (f"needs the lab set-up `lab: {{{setup}}}` (a shared block-device spool with host fencing); "
                    f"the VM lab's stores each keep their own spool and {self.dir / 'cluster.yml'} has no fence: section")
        unknown = [k for k, _ in pb.spec if k not in VARIANT_KEYS]
        if unknown:
            return (f"runs the agents on a spec variant ({', '.join(unknown)}) the VM lab cannot deploy; "
                    f"set it in {self.dir / 'cluster.yml'} and redeploy to drill it")
        return None

    def use_spec(self, overrides: dict[str, Any]) -> dict[str, Any]:
        """Deploy the agents' spec with `overrides` the way an operator changes a cluster: a variant of
        cluster.yml (hacluster_lab.lab.variant) rolled out by `hacluster deploy` over SSH, one host at
        a time, the store holder last; empty overrides deploy cluster.yml itself again. Only when the
        deployed spec would change: drills asking for the same overrides run one after another (the
        CLI groups them), so this happens once per variant and once back."""
        from ..lab.variant import spec_change, with_overrides

        text = with_overrides(self._own, overrides)
        if text == self._deployed and not self._tier_text:
            return {}
        t = time.monotonic()
        self._deploy(text)
        self._deployed = text
        self._tier_text.clear()
        return {"spec": spec_change(overrides), "deploy_s": round(time.monotonic() - t, 3)}

    def set_placement(self, role: str, placement: dict[str, Any] | None) -> dict[str, Any]:
        """The `placement` step on machines: the deployed spec with these `roles.ROLE` keys (None: as
        deployed by use_spec), rolled out to the role's tier only (`deploy --limit`, the holder
        last) -- the machines that are on; a powered-off one keeps its file until the next deploy."""
        from ..lab.variant import with_placement

        text = self._deployed
        if placement is not None:
            text = with_placement(text, role, placement, "cluster.yml")  # a bad patch fails before any deploy
        tier = self.spec.roles[role].tier
        t = time.monotonic()
        if text != self._tier_text.get(tier, self._deployed):
            hosts = [n.name for n in self.spec.nodes.values() if n.tier == tier and n.name not in self._off]
            self._deploy(text, hosts)
            if text == self._deployed:
                self._tier_text.pop(tier, None)
            else:
                self._tier_text[tier] = text
        return {"restarted": {"deploy": round(time.monotonic() - t, 3)}, "spec": f"cluster.yml, roles.{role}: {placement}",
                "t_mono": time.monotonic()}

    def _deploy(self, spec_text: str, limit: list[str] | None = None) -> None:
        """`hacluster deploy` of `spec_text` (to `limit`'s hosts, or all), from the lab's router."""
        from ruamel.yaml import YAML

        state = self.dir / ".state"
        state.mkdir(exist_ok=True)
        spec = state / "cluster-variant.yml"
        spec.write_text(spec_text)
        yaml = YAML(typ="rt")
        inv = yaml.load((self.dir / "inventory.yml").read_text())
        inv["all"]["vars"]["spec"] = str(spec)
        inv_path = self.dir / VARIANT_INVENTORY
        with inv_path.open("w") as f:
            yaml.dump(inv, f)
        # the lab's router namespace has no way out: the wheel builds offline, the wheelhouse is cached
        env = {**os.environ, "PIP_NO_BUILD_ISOLATION": "0", "PIP_NO_INDEX": "1"}
        cmd = [sys.executable, "-m", "hacluster", "deploy", "--inventory", str(inv_path)]
        if limit is not None:
            cmd += ["--limit", ",".join(limit)]
        t = time.monotonic()
        try:
            res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=DEPLOY_TIMEOUT_S)
        except subprocess.TimeoutExpired as err:
            raise UserError(f"vagrant target: redeploying the spec variant took over {DEPLOY_TIMEOUT_S:.0f} s") from err
        finally:
            inv_path.unlink(missing_ok=True)
        log = state / "variant-deploy.log"
        with log.open("a") as f:
            f.write(f"$ {' '.join(cmd)}\n{res.stdout}{res.stderr}\n")
        if res.returncode != 0:
            tail = "\n".join((res.stdout + res.stderr).strip().splitlines()[-8:])
            raise UserError(f"vagrant target: deploying the spec variant failed (exit {res.returncode}; {log}):\n{tail}")
        took = round(time.monotonic() - t, 1)
        print(f"vagrant target: deployed the spec variant to {', '.join(limit) if limit else 'every host'} in {took} s",
              file=sys.stderr)

    def open(self) -> None:
        down = reachable(self.addr)
        if down:
            detail = "; ".join(f"{n} ({why})" for n, why in sorted(down.items()))
            raise UserError(f"vagrant target: {len(down)} of {len(self.addr)} VMs not reachable: {detail}. "
                            f"Bring the VM lab up first (cd {self.dir} && vagrant up; see vagrant/README.md)", 2)

    def close(self) -> None:
        self.stop_traffic()
        if self._mon is not None:
            self.stop_monitor()
        for c in self._conns.values():
            c.close()
        self._conns.clear()
        try:
            self.use_spec({})  # the machines run cluster.yml again, as deployed by `vagrant up`
        except UserError as err:  # the drills' reports stand; say the machines kept the variant
            print(f"vagrant target: {err}", file=sys.stderr)

    def _ssh(self, host: str, cmd: str, timeout: float = 30.0, warn: bool = False) -> Any:
        from fabric import Connection

        if host not in self._conns:
            h = self.inventory.hosts[host]
            key = h.var("ssh_key")
            key_path = str((self.dir / key) if key and not Path(key).is_absolute() else key)
            self._conns[host] = Connection(h.address, user=h.var("ssh_user") or "root", port=h.var("ssh_port") or 22,
                                           connect_timeout=CONNECT_TIMEOUT_S,
                                           connect_kwargs={"key_filename": key_path} if key else {})
        return self._conns[host].run(cmd, hide=True, warn=warn, timeout=timeout)

    # ------------------------------------------------------------------ shape

    def hosts(self) -> set[str]:
        return set(self.addr)

    def roles(self) -> dict[str, RoleInfo]:
        return {n: RoleInfo(n, r.tier, str(r.vips[0].address.ip) if r.vips else "",
                            tuple(x.name for x in self.spec.candidates(n))) for n, r in self.spec.roles.items()}

    def zk_hosts(self) -> list[str]:
        return [h.name for h in self.inventory.group("zookeeper")]

    def mta_hosts(self) -> list[str]:
        return [n for n in self.addr if n in self.spec.nodes] + (["client"] if "client" in self.addr else [])

    # ------------------------------------------------------------------ observation

    def _vip_holders(self, role: RoleInfo) -> list[str]:
        out = []
        for cand in role.candidates:
            if cand in self._off:
                continue
            r = self._ssh(cand, f"ip -j addr show dev {LAB_IFACE}", timeout=5, warn=True)
            try:
                links = json.loads(r.stdout or "[]")
            except ValueError:
                continue
            for ln in links:
                if "UP" in ln.get("flags", []) and any(a.get("local") == role.vip for a in ln.get("addr_info", [])):
                    out.append(cand)
        return sorted(out)

    def _sample(self) -> None:
        d = self._mon_data
        d.samples += 1
        t = time.monotonic()
        for role in self.roles().values():
            if not role.vip:
                continue
            hs = self._vip_holders(role)
            if self._last.get(role.vip) != hs:
                d.transitions.append({"t": t, "vip": role.vip, "holders": hs})
                self._last[role.vip] = hs
            if len(hs) > 1:
                d.dual_holder_samples += 1
                d.dual_holder_intervals.append({"vip": role.vip, "holders": hs, "t_start": t, "t_end": t + POLL_S})

    def start_monitor(self, duration_s: float) -> None:
        self._mon_data = MonitorData(errors=[f"VM lab: holders polled over SSH every {POLL_S:g}s (not 5 ms)"])
        self._last = {}
        self._mon_stop.clear()
        end = time.monotonic() + duration_s
        self._sample()

        def loop() -> None:
            last = time.monotonic()
            while not self._mon_stop.wait(POLL_S) and time.monotonic() < end:
                try:
                    self._sample()
                except Exception as err:  # a missed sample is reported, not fatal
                    self._mon_data.errors.append(str(err))
                now = time.monotonic()
                self._mon_data.max_gap_s = max(self._mon_data.max_gap_s, now - last)
                last = now

        self._mon = threading.Thread(target=loop, daemon=True, name="vagrant-monitor")
        self._mon.start()

    def stop_monitor(self) -> MonitorData:
        self._mon_stop.set()
        if self._mon is not None:
            self._mon.join(timeout=10)
        self._mon = None
        self._mon_data.t_end = time.monotonic()
        return self._mon_data

    def holders(self, role: str) -> list[str]:
        info = self.roles()[role]
        if self._mon is not None and info.vip in self._last:
            return list(self._last[info.vip])
        return self._vip_holders(info)

    def powered_off(self) -> set[str]:
        return set(self._off)

    def zk_modes(self) -> dict[str, str | None]:
        from hacluster.zkserver import four_letter, parse_mode

        out: dict[str, str | None] = {}
        for h in self.zk_hosts():
            try:
                out[h] = parse_mode(four_letter(self.addr[h], 2181))
            except (OSError, UserError):
                out[h] = None
        return out

    def member(self, node: str) -> dict[str, Any] | None:
        try:
            with urllib.request.urlopen(f"http://{self.addr[node]}:{self.spec.api.port}/status", timeout=3) as r:
                st = json.loads(r.read())
        except (OSError, ValueError):
            return None
        return {"healthy": st.get("healthy"), "reasons": st.get("reasons", []), "demote": None}

    def queue_lengths(self, nodes: list[str] | None) -> dict[str, int | None]:
        out: dict[str, int | None] = {}
        for n in nodes or self.mta_hosts():
            if n in self._off:
                out[n] = None
                continue
            r = self._ssh(n, "find /var/spool/postfix/maildrop /var/spool/postfix/incoming /var/spool/postfix/active "
                             "/var/spool/postfix/deferred /var/spool/postfix/hold -type f 2>/dev/null | wc -l",
                          timeout=10, warn=True)
            out[n] = int(r.stdout.strip() or 0) if r.ok else None
        return out

    # ------------------------------------------------------------------ actions

    def _vagrant(self, *args: str, timeout: float = 600.0) -> None:
        proc = subprocess.run(["vagrant", *args], cwd=self.dir, capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            raise UserError(f"vagrant {' '.join(args)}: {(proc.stderr or proc.stdout).strip()[-300:]}", 1)

    def _nft(self, host: str, script: str) -> None:
        self._ssh(host, f"nft -f - <<'EOF'\n{script}EOF")

    def fault(self, kind: str, node: str | None, peer: list[str] | None) -> dict[str, Any]:
        t = time.monotonic()
        n = node or ""
        if kind == "power-off":
            self._off.add(n)
            self._vagrant("halt", "--force", n)
        elif kind == "power-on":
            self._vagrant("up", n)
            self._off.discard(n)
        elif kind in ("kill-agent", "freeze", "thaw"):
            sig = {"kill-agent": "KILL", "freeze": "STOP", "thaw": "CONT"}[kind]
            self._ssh(n, f"systemctl kill -s {sig} {AGENT}")
        elif kind == "restart-agent":
            self._ssh(n, f"systemctl restart {AGENT}", timeout=60)
        elif kind == "kill-mta":
            self._ssh(n, "systemctl kill -s KILL postfix@-")
        elif kind == "isolate":
            self._nft(n, _table("hcl_isolate", f"iifname {LAB_IFACE} drop", f"oifname {LAB_IFACE} drop"))
        elif kind == "partition":
            for a, others in [(n, peer or [])] + [(p, [n]) for p in peer or []]:
                ips = ", ".join(self.addr[o] for o in others)
                self._nft(a, _table("hcl_partition", f"ip saddr {{ {ips} }} drop", f"ip daddr {{ {ips} }} drop"))
        elif kind == "heal":
            for h in self.addr:
                if h not in self._off:
                    self._ssh(h, "nft delete table inet hcl_partition; nft delete table inet hcl_isolate", warn=True)
        else:
            raise UserError(f"fault {kind} is not supported on the VM lab", 2)
        return {"t_mono": t, "fault": kind, "node": n, "peer": peer}

    def _operator(self, args: str, timeout: float = 60.0) -> Any:
        """The operator CLI on a store VM (its deployed spec carries the ZooKeeper credentials)."""
        host = next((c for c in self.roles()["store"].candidates if c not in self._off), None) if "store" in self.spec.roles else None
        if host is None:
            raise UserError("no store VM is up to run the operator CLI on", 1)
        from hacluster.deploy.render import Layout

        # where `hacluster deploy` put the active venv and the deployed spec (the inventory's prefix)
        layout = Layout(self.inventory.hosts[host].var("prefix"))
        return self._ssh(host, f"{layout.current}/bin/hacluster {args} --config {layout.spec}", timeout=timeout, warn=True)

    def switchover(self, role: str, to: str | None, wait_s: float) -> dict[str, Any]:
        r = self._operator(f"switchover {role} --yes --wait {wait_s:g} --json" + (f" --to {to}" if to else ""), wait_s + 30)
        try:
            out = json.loads(r.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            out = {"error": (r.stderr or r.stdout).strip()[-300:]}
        out["rc"] = r.exited
        if isinstance(out.get("seconds"), (int, float)):
            # when the request was written, as the operator CLI measured it -- as the lab target does:
            # docker exec / SSH and the CLI's start-up (2+ s on a loaded machine) are not the switchover
            out["t_mono"] = time.monotonic() - out["seconds"]
        return out

    def operator(self, args: list[str], timeout: float = 30.0) -> dict[str, Any]:
        import shlex

        r = self._operator(" ".join(shlex.quote(a) for a in args) + " --json", timeout)
        return json_answer(r.stdout, r.stderr, r.exited)

    def maintenance(self, on: bool) -> dict[str, Any]:
        r = self._operator(f"maintenance {'on' if on else 'off'}")
        return {"rc": r.exited, "out": r.stdout.strip()}

    def _check_param(self, node: str, check: str, param: str) -> str:
        for cs in self.spec.health.get(self.spec.nodes[node].tier, ()):
            if cs.check == check and isinstance(cs.params.get(param), str):
                return cs.params[param].format(node=node, state_dir=f"/run/hacluster/{node}", cluster=self.spec.name)
        raise UserError(f"{self.dir / 'cluster.yml'} has no {check} check with `{param}` for {node}'s tier: the "
                        f"{check} step needs one (docs/drills.md)", 2)

    def raid_sample(self, node: str, sample: str) -> dict[str, Any]:
        path = self._check_param(node, "raid", "mdstat")
        self._ssh(node, f"cat > {path}.tmp <<'EOF'\n{samples.SAMPLES[sample]}EOF\nmv {path}.tmp {path}")
        return {"path": path, "sample": sample}

    def spool_fill(self, node: str, fill: str) -> dict[str, Any]:
        path = self._check_param(node, "spool", "path")
        if fill == "free":
            self._ssh(node, f"rm -f {path}/{FILL_NAME}")
        else:
            out = self._ssh(node, fill_script(path, FILL_NAME), warn=True, timeout=300)
            return {"path": path, "fill": fill, **fill_result(out.stdout)}
        return {"path": path, "fill": fill}

    def flush_queues(self) -> None:
        for n in self.mta_hosts():
            if n not in self._off:
                self._ssh(n, "postqueue -f", warn=True)

    def restore(self) -> dict[str, Any]:
        t = time.monotonic()
        for n in sorted(self._off):
            self.fault("power-on", n, None)
        self.fault("heal", None, None)
        for n in self.mta_hosts():
            if n in self.spec.nodes:
                self._ssh(n, f"systemctl kill -s CONT {AGENT}; systemctl start {AGENT}", warn=True)
        # undo the raid and spool steps (as the namespace lab's restore does): no sample, no filler
        for n in sorted(self.spec.nodes):
            for check, param, leftover in (("raid", "mdstat", "{}"), ("spool", "path", "{}/" + FILL_NAME)):
                try:
                    path = self._check_param(n, check, param)
                except UserError:
                    continue
                self._ssh(n, f"rm -f {leftover.format(path)}", warn=True)
        return {"t_mono": t}

    def baseline(self, timeout_s: float) -> dict[str, Any]:
        t0 = time.monotonic()
        fixed = self.restore()
        fixed.pop("t_mono", None)
        while time.monotonic() - t0 < timeout_s:
            modes = self.zk_modes()
            if all(modes.values()) and all(len(self._vip_holders(r)) == 1 for r in self.roles().values() if r.vip):
                fixed["seconds"] = round(time.monotonic() - t0, 3)
                return fixed
            time.sleep(1.0)
        raise UserError(f"VM lab did not settle within {timeout_s:g}s (ZooKeeper {self.zk_modes()})", 1)

    # ------------------------------------------------------------------ mail

    def send_probe(self, user: str) -> str:
        """A message to `user` handed to the client machine's Postfix (`sendmail`), which delivers
        it by MX through the lab DNS, as the namespace lab's client does."""
        from ..lab.dovecot import probe_message

        to, sender = f"{user}@{self.spec.mail.domain}", f"tester@client.{self.spec.mail.domain}"
        token, msg = probe_message(to, sender, "imap drill")
        r = self._ssh("client", f"printf %s {shlex.quote(msg)} | /usr/sbin/sendmail -f {shlex.quote(sender)} -- "
                                f"{shlex.quote(to)}", warn=True)
        if r.exited != 0:
            raise UserError(f"vagrant target: sendmail on the client failed (exit {r.exited}): {r.stderr.strip()[-300:]}")
        return token

    def imap_read(self, user: str, token: str | None = None) -> dict[str, Any]:
        """IMAP with TLS through the store VIP, from the host (on the lab network): the holder's
        Dovecot (`hacluster lab mail-path` runs one on every store over its Maildirs)."""
        from ..lab.dovecot import read_inbox

        vip = self.roles()["store"].vip if "store" in self.spec.roles else ""
        if not vip:
            return {"error": "no store role with a VIP in the VM lab's cluster.yml"}
        return read_inbox(vip, user, token)

    def start_traffic(self, rate_per_s: float, connections: int) -> None:
        """The lab's sender (hacluster_lab.lab.mailload.SENDER) run on the host. It sends by MX as in the
        namespace lab: the lab DNS on the client machine (`hacluster lab mail-path` sets it up)
        answers MX 10 relay1, MX 20 relay2, so the sender falls back to relay2 by itself. A lab
        without a client machine gets the best MX by the spec's mx_preference instead."""
        import sys
        import uuid

        from ..lab.mailload import SENDER

        relays = sorted((n for n in self.spec.nodes.values() if n.mx_preference is not None),
                        key=lambda n: n.mx_preference or 0)  # filtered above: `or 0` only narrows the type
        if not relays:
            raise UserError("no node with mx_preference in the VM lab spec", 2)
        dns = self.addr.get("client", "")
        cfg = {"run": f"hd{uuid.uuid4().hex[:10]}", "domain": self.spec.mail.domain, "dns": dns,
               "target": "mx" if dns else self.addr[relays[0].name], "rate": rate_per_s, "size": 2000,
               "rcpt": [f"user@{self.spec.mail.domain}"], "count": 1_000_000, "connections": connections,
               "retry_s": 0.0, "retry_delay": 0.2, "retry_ambiguous": False, "timeout": 2.0, "max_s": 900.0,
               "stop_fast": False}
        self._subs = []
        self._proc = subprocess.Popen([sys.executable, "-c", SENDER, json.dumps(cfg)], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, text=True)

    def stop_traffic(self) -> list[Any]:
        from ..lab.mailload import Submission

        p, self._proc = self._proc, None
        if p is None:
            return self._subs
        try:
            out, _ = p.communicate("stop\n", timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            out, _ = p.communicate()
        for line in out.splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if not rec.get("done"):
                self._subs.append(Submission.from_dict(rec))
        return self._subs

    def audit(self, submissions: list[Any], wait_s: float) -> dict[str, Any]:
        """Grep every store VM's Maildirs for the accepted Message-IDs (bounded by wait_s)."""
        need = {s.msgid for s in submissions if s.accepted}
        t0 = time.monotonic()
        found: dict[str, int] = {}
        while True:
            found = {}
            for store in self.roles()["store"].candidates if "store" in self.spec.roles else []:
                if store in self._off:
                    continue
                r = self._ssh(store, "grep -rhoi '^message-id: *<[^>]*>' /var/mail /var/vmail /home/*/Maildir "
                                     "2>/dev/null | sed 's/^[^<]*//'", timeout=60, warn=True)
                for mid in r.stdout.split():
                    found[mid] = found.get(mid, 0) + 1
            if need <= found.keys() or time.monotonic() - t0 > wait_s:
                break
            time.sleep(2.0)
        lost = sorted(need - found.keys())
        return {"submitted": len(submissions), "accepted": len(need), "lost": len(lost),
                "delivered_once": sum(1 for m in need if found.get(m) == 1),
                "duplicates": sum(1 for m in need if found.get(m, 0) > 1),
                "not_accepted": sum(1 for s in submissions if not s.accepted), "ambiguous": 0, "late": 0,
                "lost_msgids": lost[:100], "waited_s": round(time.monotonic() - t0, 3)}
