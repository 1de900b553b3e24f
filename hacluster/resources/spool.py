"""The `spool` resource: where the store tier keeps accepted mail, first in the start order
(spool -> MTA -> VIP) so nothing is accepted before the spool is ours.

mode `shared`: the Maildir tree *and* the Postfix queue_directory live on one spool device (or
directory) that is mounted (bind-mounted) on the holder only. Start mounts it, checks it is the
right filesystem, claims the owner marker with the fencing token (refusing if the marker carries a
higher one: we are a stale holder) and proves it takes writes. Stop unmounts, lazily after a
bounded wait if files are still open.

mode `mirrored`: every store has its own copy. The holder's sender pushes each message to the
peers' receivers (hacluster.spool); the receiver runs for the agent's whole life, because a
standby must take copies without holding the role. Start (= promotion) raises our token on the
local marker, catches up from the old holder if it answers -- or reports by file name what it
announced and we never got -- and then starts sending.

Params: see docs/spool.md (mode, path, device, fstype, mount_options, subdirs, umount_wait_s,
peer, replicate_port, listen, catchup_timeout_s, require_catchup, drain_timeout_s,
scan_interval_s, replicate_deletes).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..spool import mount as mnt
from ..spool.marker import MarkerError, StaleToken, check, claim, write_atomic
from ..spool.protocol import Rejected, parse_peer
from ..spool.drain import QueueDrain
from ..spool.receiver import Receiver
from ..spool.sender import CatchUp, Sender, catch_up
from .base import OCF, Resource

log = logging.getLogger(__name__)

MODES = ("shared", "mirrored")
DEFAULT_PORT = 7925


class SharedSpool(Resource):
    def __init__(self, name: str, device: str, path: str | Path, node: str, fstype: str | None = None,
                 mount_options: str | None = None, subdirs: tuple[str, ...] = (), umount_wait_s: float = 5.0) -> None:
        self.name = name
        self.device = device
        self.path = Path(path)
        self.node = node
        self.fstype, self.mount_options = fstype, mount_options
        self.subdirs = tuple(subdirs)
        self.umount_wait_s = umount_wait_s
        self.token: int | None = None

    def set_fencing_token(self, token: int) -> None:
        self.token = token

    def self_fence_steps(self) -> list[tuple[str, str]]:
        """The guard detaches the spool (after the MTA is killed): nothing of ours writes it after
        the deadline, and a takeover can mount it (docs/spool.md)."""
        return [("umount", str(self.path))]

    def _ours_mounted(self) -> bool:
        return mnt.is_mounted(self.path) and mnt.same_source(self.device, self.path)

    def start(self) -> OCF:
        if mnt.kind(self.device) is None:
            log.error("spool %s: device %s is not a block device or directory", self.name, self.device)
            return OCF.ERR_CONFIGURED
        self.path.mkdir(parents=True, exist_ok=True)
        if mnt.is_mounted(self.path):
            if not mnt.same_source(self.device, self.path):
                log.error("spool %s: something other than %s is mounted at %s", self.name, self.device, self.path)
                return OCF.ERR_GENERIC
        else:
            err = mnt.mount(self.device, self.path, self.fstype, self.mount_options)
            if err is not None or not self._ours_mounted():
                log.error("spool %s: cannot mount %s at %s: %s", self.name, self.device, self.path, err or "not mounted")
                return OCF.ERR_GENERIC
        token = self.token or 0
        try:
            m = claim(self.path, token, self.node)
        except StaleToken as err:
            log.error("spool %s: refusing to start: %s", self.name, err)
            self._let_go()
            return OCF.ERR_GENERIC
        except (MarkerError, OSError) as err:
            log.error("spool %s: cannot claim the owner marker: %s", self.name, err)
            self._let_go()
            return OCF.ERR_GENERIC
        problem = mnt.write_probe(self.path)
        if problem is not None:
            log.error("spool %s: mounted but not writable: %s", self.name, problem)
            self._let_go()
            return OCF.ERR_GENERIC
        for sub in self.subdirs:
            (self.path / sub).mkdir(parents=True, exist_ok=True)
        log.info("spool %s: %s mounted at %s, owner %s token %d", self.name, self.device, self.path, m.node, m.token)
        return OCF.SUCCESS

    def _let_go(self) -> None:
        ok, lazy, detail = mnt.umount(self.path, self.umount_wait_s)
        if not ok:
            log.error("spool %s: cannot unmount %s: %s", self.name, self.path, detail)

    def stop(self) -> OCF:
        if not self._ours_mounted():
            return OCF.SUCCESS
        ok, lazy, detail = mnt.umount(self.path, self.umount_wait_s)
        if not ok:
            log.error("spool %s: cannot unmount %s: %s", self.name, self.path, detail)
            return OCF.ERR_GENERIC
        if lazy:
            log.warning("spool %s: %s", self.name, detail)
        return OCF.SUCCESS

    def monitor(self) -> OCF:
        if not self._ours_mounted():
            return OCF.NOT_RUNNING
        if self.token is not None:
            try:
                check(self.path, self.token, self.node)
            except StaleToken as err:
                log.error("spool %s: %s", self.name, err)
                return OCF.ERR_GENERIC
            except MarkerError as err:
                log.error("spool %s: %s", self.name, err)
                return OCF.ERR_GENERIC
        problem = mnt.write_probe(self.path)
        if problem is not None:
            log.error("spool %s: %s", self.name, problem)
            return OCF.ERR_GENERIC
        return OCF.SUCCESS


class MirroredSpool(Resource):
    def __init__(self, name: str, path: str | Path, node: str, peers: list[tuple[str, int]],
                 listen: tuple[str, int] | None = None, catchup_timeout_s: float = 10.0,
                 require_catchup: bool = False, drain_timeout_s: float = 1.0, scan_interval_s: float = 5.0,
                 replicate_deletes: bool = False, report_dir: str | Path | None = None) -> None:
        self.name = name
        self.path = Path(path)
        self.node = node
        self.peers = list(peers)
        self.listen = listen
        self.catchup_timeout_s = catchup_timeout_s
        self.require_catchup = require_catchup
        self.drain_timeout_s = drain_timeout_s
        self.scan_interval_s = scan_interval_s
        self.replicate_deletes = replicate_deletes
        self.report_dir = Path(report_dir) if report_dir else None
        self.token = 0
        self.receiver: Receiver | None = None
        self.senders: list[Sender] = []
        self.last_promotion: dict[str, Any] | None = None
        self.drain: QueueDrain | None = None  # this node's leftover MTA queue -> the holder (spool/drain.py)

    # ------------------------------------------------------------------ standby side

    def open_receiver(self) -> Receiver:
        """Start taking copies (call once, at agent start; it runs until close())."""
        if self.receiver is None:
            assert self.listen is not None, "no listen address"
            self.path.mkdir(parents=True, exist_ok=True)
            self.receiver = Receiver(self.path, self.node, self.listen[0], self.listen[1], self.name).start()
        return self.receiver

    def close(self) -> None:
        self._stop_senders(0.0)
        if self.drain is not None:
            self.drain.close()
        if self.receiver is not None:
            self.receiver.close()
            self.receiver = None

    # ------------------------------------------------------------------ OCF

    def set_fencing_token(self, token: int) -> None:
        self.token = token

    def start(self) -> OCF:
        if self.senders and all(s.alive() and s.token == self.token for s in self.senders):
            return OCF.SUCCESS
        self._stop_senders(0.0)
        if self.drain is not None:
            self.drain.hold()  # the MTA starts after us on this queue: no drain beside it
        self.path.mkdir(parents=True, exist_ok=True)
        try:
            if self.receiver is not None:
                self.receiver.raise_token(self.token, self.node)  # old holders' pushes now fail
            else:
                claim(self.path, self.token, self.node)
        except (StaleToken, MarkerError, OSError) as err:
            log.error("spool %s: refusing to start: %s", self.name, err)
            return OCF.ERR_GENERIC
        report = self._catch_up()
        if report is None:
            return OCF.ERR_GENERIC
        if self.require_catchup and (report["unreachable"] or report["failed"]):
            log.error("spool %s: catch-up incomplete and require_catchup is set", self.name)
            return OCF.ERR_GENERIC
        self.senders = [Sender(self.path, p, self.token, self.node, self.name, self.scan_interval_s,
                               replicate_deletes=self.replicate_deletes).start() for p in self.peers]
        return OCF.SUCCESS

    def _catch_up(self) -> dict[str, Any] | None:
        """Copy from every peer what it has and we lack. None if we turn out to be stale."""
        t0 = time.monotonic()
        results: list[CatchUp] = []
        for peer in self.peers:
            try:
                results.append(catch_up(self.path, peer, self.token, self.node, self.name, self.catchup_timeout_s))
            except (StaleToken, Rejected) as err:
                log.error("spool %s: refusing to start: %s", self.name, err)
                return None
        unreachable = [r.peer for r in results if not r.reachable]
        missing = self.receiver.missing() if (unreachable and self.receiver is not None) else []
        report: dict[str, Any] = {
            "spool": self.name, "node": self.node, "token": self.token, "at": round(time.time(), 3),
            "seconds": round(time.monotonic() - t0, 3),
            "pulled": sorted(p for r in results for p in r.pulled),
            "failed": {k: v for r in results for k, v in r.failed.items()},
            "unreachable": {r.peer: r.detail for r in results if not r.reachable},
            # announced by the old holder, never received, not here: exactly what we could not copy
            "missing": missing,
        }
        self.last_promotion = report
        if report["pulled"]:
            log.warning("spool %s: caught up %d messages from the old holder", self.name, len(report["pulled"]))
        if unreachable:
            log.error("spool %s: old holder unreachable (%s); %d announced messages not copied%s", self.name,
                      ", ".join(unreachable), len(missing), (": " + ", ".join(missing[:20])) if missing else "")
        for rel, why in report["failed"].items():
            log.error("spool %s: could not copy %s: %s", self.name, rel, why)
        if self.report_dir is not None:
            try:
                self.report_dir.mkdir(parents=True, exist_ok=True)
                write_atomic(self.report_dir / f"spool-{self.name}-promotion-{self.token}.json",
                             json.dumps(report, indent=1).encode())
            except OSError as err:
                log.warning("spool %s: cannot write the promotion report: %s", self.name, err)
        return report

    def _stop_senders(self, drain_s: float) -> int:
        left = 0
        for s in self.senders:
            s.stop(drain_s)
            left += s.lag()[0]
        self.senders = []
        return left

    def stop(self) -> OCF:
        left = self._stop_senders(self.drain_timeout_s)
        if left:
            log.warning("spool %s: stopped with %d messages not yet on the peer (they are pulled on the next "
                        "promotion or reconnection)", self.name, left)
        if self.drain is not None:
            self.drain.release()  # the MTA stopped before us: send what it left to the new holder
        return OCF.SUCCESS

    def monitor(self) -> OCF:
        if not self.senders:
            return OCF.NOT_RUNNING
        try:
            check(self.path, self.token, self.node)
        except (StaleToken, MarkerError) as err:
            log.error("spool %s: %s", self.name, err)
            return OCF.ERR_GENERIC
        for s in self.senders:
            if s.state in ("stale", "failed"):
                log.error("spool %s: replicator to %s is %s: %s", self.name, s.label[1], s.state, s.detail)
                return OCF.ERR_GENERIC
        return OCF.SUCCESS

    def lag(self) -> tuple[int, float]:
        """(messages, seconds) behind, worst peer."""
        lags = [s.lag() for s in self.senders] or [(0, 0.0)]
        return max(n for n, _ in lags), max(a for _, a in lags)


# --------------------------------------------------------------------------- the builder


def _num(params: dict[str, Any], key: str, where: str, default: float, minimum: float = 0.0) -> float:
    v = params.get(key, default)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v < minimum:
        raise UserError(f"{where}.{key}: must be a number >= {minimum:g}, got {v!r}")
    return float(v)


def _bool(params: dict[str, Any], key: str, where: str, default: bool) -> bool:
    v = params.get(key, default)
    if not isinstance(v, bool):
        raise UserError(f"{where}.{key}: must be true or false, got {v!r}")
    return v


def _peers(params: dict[str, Any], ctx: Any, port: int, where: str) -> list[tuple[str, int]]:
    """`peer`: "host[:port]", a list of them, or {node: "host[:port]"} (own entry skipped);
    default: every other node of the role's tier at its primary address."""
    raw = params.get("peer")
    if raw is None:
        texts = [n.address for n in ctx.spec.candidates(ctx.role.name) if n.name != ctx.node.name]
    elif isinstance(raw, str):
        texts = [raw]
    elif isinstance(raw, list) and all(isinstance(x, str) for x in raw):
        texts = list(raw)
    elif isinstance(raw, dict) and all(isinstance(x, str) for x in raw.values()):
        texts = [v for k, v in raw.items() if k != ctx.node.name]
    else:
        raise UserError(f"{where}.peer: must be host[:port], a list of them, or a mapping node -> host[:port]")
    try:
        return [parse_peer(t, port) for t in texts]
    except ValueError as err:
        raise UserError(f"{where}.peer: {err}") from None


def build(res: Any, params: dict[str, Any], ctx: Any) -> Resource:
    """Factory builder. In mirrored mode this also starts the receiver (see the module doc)."""
    where = f"{ctx.spec.source}: roles.{ctx.role.name}.resources[{res.name}]"
    mode = params.get("mode")
    if mode not in MODES:
        raise UserError(f"{where}.mode: must be one of {', '.join(MODES)}, got {mode!r}")
    path = params.get("path")
    if not isinstance(path, str) or not path.startswith("/"):
        raise UserError(f"{where}.path: required, an absolute path")
    if mode == "shared":
        device = params.get("device")
        if not isinstance(device, str) or not device.startswith("/"):
            raise UserError(f"{where}.device: required in shared mode (a block device or a directory)")
        subdirs = params.get("subdirs", [])
        if not isinstance(subdirs, list) or not all(isinstance(s, str) and s and not s.startswith("/")
                                                      and ".." not in s.split("/") for s in subdirs):
            raise UserError(f"{where}.subdirs: must be a list of relative paths inside the spool")
        for key in ("fstype", "mount_options"):
            if key in params and not isinstance(params[key], str):
                raise UserError(f"{where}.{key}: must be a string")
        return SharedSpool(res.name, device, path, ctx.node.name, params.get("fstype"), params.get("mount_options"),
                           tuple(subdirs), _num(params, "umount_wait_s", where, 5.0))
    port = params.get("replicate_port", DEFAULT_PORT)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise UserError(f"{where}.replicate_port: must be a TCP port, got {port!r}")
    listen_raw = params.get("listen", ctx.node.address)
    listen = None
    if listen_raw is not False:
        if not isinstance(listen_raw, str):
            raise UserError(f"{where}.listen: must be host[:port] or false")
        try:
            listen = parse_peer(listen_raw, port, listen=True)
        except ValueError as err:
            raise UserError(f"{where}.listen: {err}") from None
    spool = MirroredSpool(res.name, path, ctx.node.name, _peers(params, ctx, port, where), listen,
                          _num(params, "catchup_timeout_s", where, 10.0, 0.1),
                          _bool(params, "require_catchup", where, False),
                          _num(params, "drain_timeout_s", where, 1.0),
                          _num(params, "scan_interval_s", where, 5.0, 0.05),
                          _bool(params, "replicate_deletes", where, False), ctx.state_dir)
    if listen is not None:
        try:
            spool.open_receiver()
        except OSError as err:
            raise UserError(f"{where}.listen: cannot listen on {listen[0]}:{listen[1]}: {err.strerror or err}") from None
    spool.drain = _queue_drain(ctx)
    if spool.drain is not None:
        spool.drain.start()
    return spool


def _queue_drain(ctx: Any) -> QueueDrain | None:
    """A drain for the role's MTA queue (the role's first `mta` resource with a config_dir, sent to
    the role's first IPv4 VIP), or None when the role has no such MTA or VIP."""
    from .factory import _expand

    mta = next((r for r in getattr(ctx.role, "resources", ()) if r.type == "mta" and r.params.get("config_dir")), None)
    vip = next((v for v in getattr(ctx.role, "vips", ()) if v.address.version == 4), None)
    if mta is None or vip is None:
        return None
    subst = {"node": ctx.node.name, "role": ctx.role.name, "cluster": ctx.spec.name, "state_dir": str(ctx.state_dir)}
    return QueueDrain(_expand(mta.params["config_dir"], subst), f"[{vip.address.ip}]:25", ctx.state_dir)
