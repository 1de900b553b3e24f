"""The namespace lab as a drill target (hacluster_lab.lab.Lab underneath).

The drill lab is the embedded lab spec with a `health:` section for the store tier merged in (DRILL_HEALTH):
a RAID check reading `{state_dir}/mdstat` (the raid step writes an mdstat sample there; absent
means "no md arrays", i.e. fine) and a spool check on the store's Maildir base, which the drill
lab mounts as a small tmpfs (SPOOL_MB) so the spool step can fill it for real: the write probe
then gets ENOSPC and the policy demotes the holder, exactly as on a full disk.

Operator commands (status, switchover, maintenance) run as `hacluster ...` inside the client
namespace: the only way to reach ZooKeeper, and the same path an operator takes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hacluster.errors import UserError
from ..lab.lab import Lab
from ..lab import netns
from ..lab.netns import in_ns
from ..lab.postfix import MAIL_UID
from ..lab.spectext import merge_health
from ..lab.state import LabOptions, load_json
from hacluster.spec import ClusterSpec, default_spec_text, parse_spec
from . import samples
from .target import FILL_NAME, MonitorData, RoleInfo, Target, json_answer, monitor_data, vip_holders

if TYPE_CHECKING:  # imported when traffic starts
    from ..lab.mailload import MailLoad

SPOOL_MB = 32
LOOP_SPOOL_MB = 256  # lab `spool: shared-loop`: the ext4 image behind the store role's shared spool
DRILL_HEALTH = """
# added by hacluster_lab.drill (the drill lab): RAID from a sample file, spool on a small tmpfs
health:
  store:
    - {check: raid, mdstat: "{state_dir}/mdstat", interval_s: 0.5, timeout_s: 1.0, rise: 1, fall: 1}
    - {check: spool, path: "{state_dir}/mail", warn_free_pct: 5, interval_s: 0.5, timeout_s: 1.0, rise: 1, fall: 2}
"""


def drill_spec_text() -> str:
    """The embedded lab spec with the drill health checks merged in (they replace the lab spec's
    own raid and spool checks of the store tier: the drill's raid step writes its own samples,
    absent = no arrays, and its spool step fills the tmpfs at {state_dir}/mail)."""
    return merge_health(default_spec_text(), DRILL_HEALTH)


class LabTarget(Target):
    name = "lab"

    def __init__(self, state_dir: str | Path, prefix: str, spec_path: str | Path | None = None,
                 keep: bool = False, lab_setup: dict[str, Any] | None = None) -> None:
        #: the playbooks' `lab:` (spool: shared-loop -> the store spool on a loop device, fenced)
        self.lab_setup = dict(lab_setup or {})
        self.spool_audit: Any = None  # the spool write audit (hacluster_lab.lab.spool_audit) on a loop-device spool
        self.state_dir = Path(state_dir)
        self.prefix = prefix
        self.spec_path = spec_path
        self.keep = keep  # leave the lab up after close() (to look at it)
        self.lab: Lab | None = None
        self.owned = False
        self.mon = None
        self.load: MailLoad | None = None
        self.maintenance_on = False
        self.nft_dirty = True
        self._spec: ClusterSpec | None = None
        self._text: str | None = None
        self._agents_text: str | None = None  # the agents' spec file as the lab wrote it (use_spec)

    # ------------------------------------------------------------------ lifecycle

    def spec(self) -> ClusterSpec:
        """The cluster spec the lab runs (parsed once; errors are input errors, nothing runs)."""
        if self._spec is None:
            if self.spec_path:
                try:
                    text = Path(self.spec_path).read_text()
                except OSError as err:
                    raise UserError(f"{self.spec_path}: cannot read: {err.strerror}") from None
                self._spec, self._text = parse_spec(text, str(self.spec_path)), text
            else:
                text = drill_spec_text()
                if self._loop_spool():
                    from ..lab.postfix import with_block_spool

                    text = with_block_spool(text, self.state_dir, bool(self.lab_setup.get("fencing", True)))
                self._spec, self._text = parse_spec(text, "<drill lab spec: hacluster/examples/lab.yml + drill health>"), text
        return self._spec

    def _loop_spool(self) -> bool:
        return self.lab_setup.get("spool") == "shared-loop"

    def _options(self) -> LabOptions:
        if self._loop_spool():
            return LabOptions(spool_mode="shared", spool_block_mb=LOOP_SPOOL_MB)
        return LabOptions()

    def open(self) -> None:
        if self.lab is not None:
            return
        spec = self.spec()
        rec = load_json(self.state_dir / "lab.json")
        if rec is not None and rec.get("status") == "up":
            self.lab = Lab.attach(self.state_dir)  # someone's lab: drive it, leave it up
            return
        lab = Lab(spec, self.state_dir, self.prefix, self._options(), spec_text=self._text)
        report = lab.up(before_agents=self._before_agents)
        dead = {n: s for n, s in report.agents.items() if s != "running"}
        if dead:
            lab.down()
            raise UserError(f"lab agents did not start: {dead}", 1)
        self.lab, self.owned = lab, True
        if self._loop_spool():
            from ..lab.spool_audit import SpoolAudit

            self.spool_audit = SpoolAudit.for_lab(lab, lab.paths.spool_device).start()

    def _before_agents(self, lab: Lab) -> None:
        """Small spool filesystems before any mail flows (the lab's own Postfix config already
        scales the SMTP stage timeouts, see LabOptions)."""
        for path in self._spool_paths(lab).values():
            lab.mount_tmpfs(path, SPOOL_MB, uid=MAIL_UID, gid=MAIL_UID)

    def close(self) -> None:
        if self.spool_audit is not None:
            self.spool_audit.stop()
            self.spool_audit = None
        self._stop_load()
        if self.mon is not None:
            self.mon.stop()
            self.mon = None
        if self.lab is not None and self.owned and not self.keep:
            self.lab.down()
        elif self.lab is not None:
            self.use_spec({})  # a lab we leave up runs on its own spec again
        self.lab = None

    def use_spec(self, overrides: dict[str, Any]) -> dict[str, Any]:
        """Rewrite the agents' spec file with `overrides` (hacluster_lab.lab.variant) and restart every
        agent on it when it changes: all stopped first (so no two agents run different specs at
        once), then all started. Drills asking for the same overrides run one after another (the
        CLI groups them), so this happens once per variant, not once per drill."""
        from ..lab.variant import spec_change, with_overrides

        lab = self._lab()
        if self._agents_text is None:
            self._agents_text = lab.paths.spec.read_text()
        text = with_overrides(self._agents_text, overrides)
        if lab.paths.spec.read_text() == text:
            return {}
        t_restart = time.monotonic()
        lab.paths.spec.write_text(text)
        mail = [h.name for h in lab.plan.hosts if h.is_mail_node]
        threads = [threading.Thread(target=lab.stop_agent, args=(n,), daemon=True) for n in mail]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=15)
        off = lab.powered_off()
        for n in mail:
            if n not in off:  # a powered-off host starts its agent (on this file) at power-on
                lab.start_agent(n)
        return {"spec": spec_change(overrides), "restart_s": round(time.monotonic() - t_restart, 3)}

    def _lab(self) -> Lab:
        if self.lab is None:
            raise UserError("drill target not open")
        return self.lab

    # ------------------------------------------------------------------ shape

    def hosts(self) -> set[str]:
        if self.lab is not None:
            return {h.name for h in self.lab.plan.hosts}
        from ..lab.topology import build_plan

        return {h.name for h in build_plan(self.spec(), self.prefix, self._text).hosts}

    def roles(self) -> dict[str, RoleInfo]:
        spec = self.spec()
        out = {}
        for name, role in spec.roles.items():
            cands = tuple(n.name for n in spec.candidates(name))
            vip = str(role.vips[0].address.ip) if role.vips else ""
            out[name] = RoleInfo(name, role.tier, vip, cands)
        return out

    def zk_hosts(self) -> list[str]:
        return [h.name for h in self._lab().plan.of_kind("zk")]

    def mta_hosts(self) -> list[str]:
        return [h.name for h in self._lab().plan.of_kind("client", "relay", "fallback", "store")]

    # ------------------------------------------------------------------ observation

    def start_monitor(self, duration_s: float) -> None:
        self.mon = self._lab().monitor(duration_s=duration_s).start()

    def stop_monitor(self) -> MonitorData:
        mon, self.mon = self.mon, None
        return monitor_data(mon.stop() if mon is not None else None)

    def holders(self, role: str) -> list[str]:
        return vip_holders(self.roles()[role], self.mon,
                           lambda info: sorted(self._lab().status()["vips"].get(info.vip, [])))

    def powered_off(self) -> set[str]:
        return self._lab().powered_off()

    def zk_modes(self) -> dict[str, str | None]:
        return self._lab().zk_modes()

    def _hacluster(self, args: list[str], timeout: float = 30.0) -> subprocess.CompletedProcess:
        lab = self._lab()
        cmd = in_ns(lab.ns("client"), [sys.executable, "-m", "hacluster", *args, "--config", str(lab.paths.spec)])
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return subprocess.CompletedProcess(cmd, 124, "", f"timed out after {timeout:g}s")

    def member(self, node: str) -> dict[str, Any] | None:
        """The agent's own view (`GET /status` of its REST API, asked from inside its namespace:
        no subprocess, which matters on a loaded machine): healthy, reasons; None if no agent answers."""
        lab = self._lab()
        host = lab.plan.host(node)
        url = f"http://{host.address}:{lab.spec.api.port}/status"

        def get() -> dict[str, Any]:
            with urllib.request.urlopen(url, timeout=2) as r:
                return json.loads(r.read())

        try:
            st = lab.ns_call(node, get, timeout_s=5)
        except (OSError, ValueError, UserError):
            return None
        return {"healthy": st.get("healthy"), "reasons": st.get("reasons", []), "roles": st.get("roles", {})}

    def queue_lengths(self, nodes: list[str] | None) -> dict[str, int | None]:
        lab = self._lab()
        return {n: lab.queue_length(n) for n in (nodes or self.mta_hosts())}

    # ------------------------------------------------------------------ actions

    def fence_report(self) -> dict[str, Any] | None:
        """The stores' fence events (their claims logs) and the spool audit's writes, CLOCK_MONOTONIC."""
        if self.spool_audit is None or self.lab is None:
            return None
        from hacluster.agent.claims import read_events

        lab = self.lab
        shift = time.clock_gettime(time.CLOCK_BOOTTIME) - time.monotonic()  # claims and audit use BOOTTIME
        fences = [{"node": e["node"], "target": e["target"], "ok": e["ok"], "seconds": e["seconds"], "t": e["t"] - shift}
                  for h in lab.plan.of_kind("store") for e in read_events([lab.paths.claims(h.name)])
                  if e["event"] == "fenced"]
        writes = [{"t": w.t - shift, "host": w.host} for w in list(self.spool_audit.writes)]
        return {"fences": fences, "writes": writes}

    def fault(self, kind: str, node: str | None, peer: list[str] | None) -> dict[str, Any]:
        lab = self._lab()
        if kind in ("partition", "isolate"):
            self.nft_dirty = True
        if kind == "partition":
            return lab.partition(node or "", peer or [])
        if kind == "heal":
            return lab.heal()
        return lab.fault(node or "", kind)

    def switchover(self, role: str, to: str | None, wait_s: float) -> dict[str, Any]:
        args = ["switchover", role, "--yes", "--wait", f"{wait_s:g}", "--json"] + (["--to", to] if to else [])
        proc = self._hacluster(args, timeout=wait_s + 20)
        try:
            out = json.loads(proc.stdout.strip().splitlines()[-1]) if proc.stdout.strip() else {}
        except ValueError:
            out = {}
        out["rc"] = proc.returncode
        if isinstance(out.get("seconds"), (int, float)):
            # when the request was written, as the operator CLI measured it (its start-up and
            # ZooKeeper connect, ~1-2 s on a loaded machine, are not part of the switchover)
            out["t_mono"] = time.monotonic() - out["seconds"]
        if proc.returncode not in (0, 1) or (proc.returncode == 1 and not out):
            out["error"] = (proc.stderr or proc.stdout).strip()[-300:]
        return out

    def set_placement(self, role: str, placement: dict[str, Any] | None) -> dict[str, Any]:
        from ..lab.variant import with_placement

        lab = self._lab()
        config = None
        if placement is not None:  # a bad patch fails here, before any restart
            text = with_placement(lab.paths.spec.read_text(), role, placement, str(lab.paths.spec))
            config = lab.paths.root / "spec-placement.yml"
            config.write_text(text)
        tier = self.spec().roles[role].tier
        holders = self.holders(role)
        order = sorted((h.name for h in lab.plan.of_kind(tier) if h.name not in lab.powered_off()),
                       key=lambda n: (n in holders, n))
        took = {}
        for n in order:
            t = time.monotonic()
            lab.stop_agent(n)
            lab.start_agent(n, config)
            end = time.monotonic() + 30
            while time.monotonic() < end and not (self.member(n) or {}).get("healthy"):
                time.sleep(0.2)
            took[n] = round(time.monotonic() - t, 3)
        return {"restarted": took, "spec": str(config or lab.paths.spec), "t_mono": time.monotonic()}

    def send_probe(self, user: str) -> str:
        lab = self._lab()
        return lab.send_mail(f"{user}@{lab.plan.domain}", "imap drill")

    def imap_read(self, user: str, token: str | None = None) -> dict[str, Any]:
        import shutil

        from ..lab.dovecot import read_inbox
        from ..lab.postfix import store_vip

        lab = self._lab()
        vip = store_vip(lab.plan)
        if vip is None or shutil.which("dovecot") is None:
            return {"error": "no store VIP or no Dovecot in this lab (apt-get install dovecot-imapd)"}
        out: dict[str, Any] = lab.ns_call("client", lambda: read_inbox(vip, user, token), timeout_s=20)
        return out

    def operator(self, args: list[str], timeout: float = 30.0) -> dict[str, Any]:
        proc = self._hacluster([*args, "--json"], timeout=timeout)
        return json_answer(proc.stdout, proc.stderr, proc.returncode)

    def maintenance(self, on: bool) -> dict[str, Any]:
        proc = self._hacluster(["maintenance", "on" if on else "off"], timeout=20)
        self.maintenance_on = on if proc.returncode == 0 else self.maintenance_on
        return {"rc": proc.returncode, "out": (proc.stdout or proc.stderr).strip()[-200:]}

    def _check_path(self, lab: Lab, node: str, check: str, param: str) -> Path:
        """Where the spec's `check` of the node's tier looks (its `param`, placeholders filled)."""
        host = lab.plan.host(node)
        spec = lab.spec
        for cs in spec.health.get(host.kind, ()):
            if cs.check == check and isinstance(cs.params.get(param), str):
                subst = {"node": node, "state_dir": str(lab.paths.node(node)), "cluster": spec.name}
                return Path(cs.params[param].format(**subst))
        raise UserError(f"the cluster spec has no {check} check with `{param}` for tier {host.kind}: the "
                        f"{check} step needs one (docs/drills.md)")

    def _spool_paths(self, lab: Lab) -> dict[str, Path]:
        out = {}
        for h in lab.plan.of_kind("store"):
            try:
                out[h.name] = self._check_path(lab, h.name, "spool", "path")
            except UserError:
                continue
        return out

    def raid_sample(self, node: str, sample: str) -> dict[str, Any]:
        lab = self._lab()
        path = self._check_path(lab, node, "raid", "mdstat")
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(samples.SAMPLES[sample])
        os.replace(tmp, path)  # atomic: the check never reads half a file
        return {"path": str(path), "sample": sample}

    def spool_fill(self, node: str, fill: str) -> dict[str, Any]:
        lab = self._lab()
        path = self._check_path(lab, node, "spool", "path")
        if not os.path.ismount(path) or lab.paths.root.resolve() not in path.resolve().parents:
            raise UserError(f"{path} is not a lab spool mount: refusing to fill it (the drill lab mounts a "
                            f"{SPOOL_MB} MB tmpfs there)")
        target = path / FILL_NAME
        if fill == "free":
            target.unlink(missing_ok=True)
            return {"path": str(path), "freed": True}
        written = 0
        chunk = b"\0" * (1 << 20)
        with open(target, "ab") as f:
            try:
                for _ in range(SPOOL_MB * 4):  # bounded: a tmpfs of SPOOL_MB fills well before this
                    written += f.write(chunk)
                    f.flush()
            except OSError:
                pass  # ENOSPC: full
        st = os.statvfs(path)
        return {"path": str(path), "written": written, "free_bytes": st.f_bavail * st.f_frsize}

    def flush_queues(self) -> None:
        lab = self._lab()
        for n in self.mta_hosts():
            if n not in lab.powered_off():
                lab.flush_queue(n)

    # ------------------------------------------------------------------ baseline

    def restore(self) -> dict[str, Any]:
        lab = self._lab()
        if not netns.exists(lab.plan.router_ns):
            raise UserError(f"the lab at {lab.paths.root} is gone ({lab.plan.router_ns} does not exist): "
                            "torn down by someone else?", 1)
        fixed: dict[str, Any] = {}
        stamp = time.monotonic()
        if self.nft_dirty:  # nft fault tables may be anywhere (unknown at the first settle)
            healed = lab.heal()["node"]
            if healed:
                fixed["heal"] = healed
            self.nft_dirty = False
        for name in sorted(os.listdir(lab.paths.frozen)) if lab.paths.frozen.exists() else []:
            lab.fault(name, "thaw")
            fixed.setdefault("thaw", []).append(name)
        for name in sorted(lab.powered_off()):
            lab.fault(name, "power-on")
            fixed.setdefault("power_on", []).append(name)
        for h in lab.plan.of_kind("store"):
            for check, param, undo in (("raid", "mdstat", "raid"), ("spool", "path", "spool")):
                try:
                    p = self._check_path(lab, h.name, check, param)
                except UserError:
                    continue
                target = p if undo == "raid" else p / FILL_NAME
                if target.exists():
                    target.unlink()
                    fixed.setdefault(undo, []).append(h.name)
        if self.maintenance_on:
            self.maintenance(False)
            fixed["maintenance"] = "off"
        for h in lab.plan.hosts:
            if h.is_mail_node and lab.agent_pid(h.name) is None:
                lab.start_agent(h.name)
                fixed.setdefault("agent_started", []).append(h.name)
        fixed["t_mono"] = stamp
        return fixed

    def baseline(self, timeout_s: float) -> dict[str, Any]:
        t0 = time.monotonic()
        fixed = self.restore()
        fixed.pop("t_mono", None)
        lab = self._lab()
        own_monitor = self.mon is None
        if own_monitor:
            self.start_monitor(timeout_s + 5)  # holders from netlink, not `ip` subprocesses
        try:
            return self._settle(lab, fixed, t0, timeout_s)
        finally:
            if own_monitor:
                self.stop_monitor()

    def _settle(self, lab: Lab, fixed: dict[str, Any], t0: float, timeout_s: float) -> dict[str, Any]:
        deadline = t0 + timeout_s
        waiting = "ZooKeeper quorum"
        seen: list[str] = []
        flushed = False
        mail_nodes = [h.name for h in lab.plan.hosts if h.is_mail_node]
        while time.monotonic() < deadline:
            modes = lab.zk_modes()
            holders = {r: self.holders(r) for r, info in self.roles().items() if info.vip}
            if sum(1 for m in modes.values() if m) != len(modes):
                waiting = f"ZooKeeper servers serving ({modes})"
            elif any(len(h) != 1 for h in holders.values()):
                waiting = f"one holder per role ({holders})"
            else:
                members = {n: self.member(n) for n in mail_nodes}
                bad = [n for n, m in members.items() if m is None or not m["healthy"]]
                queued = {n: q for n, q in self.queue_lengths(None).items() if q}
                if bad:
                    waiting = f"healthy agents (not yet: {', '.join(bad)})"
                elif queued:
                    waiting = f"empty queues ({queued})"
                    if not flushed:
                        self.flush_queues()
                        flushed = True
                else:
                    fixed["seconds"] = round(time.monotonic() - t0, 3)
                    return fixed
            seen.append(waiting)
            fixed["waited_for"] = list(dict.fromkeys(w.split(" (")[0] for w in seen))
            time.sleep(0.3)
        raise UserError(f"lab did not settle within {timeout_s:g}s: waiting for {waiting}", 1)

    def collect_logs(self, dest: Path, lines: int = 3000) -> Path:
        """The tails of every node's agent log, claims log and maillog (a failed drill's evidence:
        the lab and its state dir are gone once the run ends)."""
        lab = self._lab()
        dest.mkdir(parents=True, exist_ok=True)
        for h in lab.plan.hosts:
            for f in (lab.paths.agent_log(h.name), lab.paths.claims(h.name), lab.paths.maillog(h.name)):
                try:
                    tail = f.read_text(errors="replace").splitlines()[-lines:]
                except OSError:
                    continue
                (dest / f"{h.name}-{f.name}").write_text("\n".join(tail) + "\n")
        return dest

    # ------------------------------------------------------------------ mail

    def start_traffic(self, rate_per_s: float, connections: int) -> None:
        from ..lab.mailload import MailLoad

        self._stop_load()
        self.load = MailLoad(self._lab(), "mx", rate_per_s=rate_per_s, connections=connections, timeout_s=2.0,
                             max_s=900.0).start()

    def _stop_load(self) -> list[Any]:
        if self.load is None:
            return []
        subs = self.load.stop()
        self.load = None
        return subs

    def stop_traffic(self) -> list[Any]:
        return self._stop_load()

    def audit(self, submissions: list[Any], wait_s: float) -> dict[str, Any]:
        from ..lab.mailload import audit

        return audit(self._lab(), submissions, wait_s).to_dict()

