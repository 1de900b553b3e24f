"""The guard's decision (deadline, release, orphaned), its loop on a real socketpair, its netlink
messages, and the real guard process: own session, small, gone when told."""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import sys
import threading
import time

import pytest

from hacluster.resources import vip_guard as g
from hacluster.resources.vip_guard import GuardClient, GuardState, Target

# --------------------------------------------------------------------------- the decision


def test_no_deadline_waits_for_the_agent() -> None:
    s = GuardState()
    s.on_tick(1e9)
    assert s.outcome is None and s.wait_s(0.0) == 1.0


def test_deadline_expires_exactly_at_until() -> None:
    s = GuardState()
    s.on_line("until 100.5", now=100.0)
    assert s.deadline == 100.5 and s.wait_s(100.0) == pytest.approx(0.5)
    s.on_tick(100.49)
    assert s.outcome is None
    s.on_tick(100.5)
    assert s.outcome == "expired" and s.removes


def test_extension_moves_the_deadline_and_a_late_one_is_ignored() -> None:
    s = GuardState(deadline=10.0)
    s.on_line("until 12.0", now=9.9)
    s.on_tick(11.0)
    assert s.outcome is None
    s.on_tick(12.0)
    assert s.outcome == "expired"
    s.on_line("until 99", now=12.1)  # decided: nothing brings the VIP back from here
    assert s.outcome == "expired" and s.deadline == 12.0


def test_release_exits_without_removing_and_beats_a_following_eof() -> None:
    s = GuardState(deadline=10.0)
    s.on_line("release", now=5.0)
    s.on_eof()
    s.on_tick(11.0)
    assert s.outcome == "released" and not s.removes


def test_eof_means_the_agent_died() -> None:
    s = GuardState(deadline=10.0)
    s.on_eof()
    assert s.outcome == "orphaned" and s.removes


def test_garbled_lines_change_nothing() -> None:
    s = GuardState(deadline=10.0)
    for line in ("until soon", "hello", "", "until"):
        s.on_line(line, now=1.0)
    assert s.deadline == 10.0 and s.outcome is None


def test_wait_never_negative_and_capped() -> None:
    s = GuardState(deadline=5.0)
    assert s.wait_s(6.0) == 0.0
    assert s.wait_s(0.0, cap=0.25) == 0.25


# --------------------------------------------------------------------------- the loop


class _Run:
    """serve() in a thread on one end of a socketpair; the test plays the agent on the other."""

    def __init__(self, until: float | None = None) -> None:
        self.agent, guard = socket.socketpair()
        self.removed_at: float | None = None
        self.state = GuardState(deadline=until)
        self.outcome: str | None = None

        def remove() -> None:
            self.removed_at = g.boottime()

        def body() -> None:
            self.outcome = g.serve(guard, self.state, remove)
            guard.close()

        self.thread = threading.Thread(target=body, daemon=True)
        self.thread.start()

    def join(self) -> None:
        self.thread.join(timeout=3)
        assert not self.thread.is_alive()


def test_serve_removes_at_once_when_the_agent_vanishes() -> None:
    r = _Run(until=g.boottime() + 60)
    time.sleep(0.05)
    t0 = g.boottime()
    r.agent.close()
    r.join()
    assert r.outcome == "orphaned" and r.removed_at is not None and r.removed_at - t0 < 0.1


def test_serve_removes_when_the_deadline_passes_without_extension() -> None:
    until = g.boottime() + 0.15
    r = _Run(until=until)
    r.join()
    assert r.outcome == "expired"
    assert until <= r.removed_at < until + 0.1
    r.agent.close()


def test_serve_kept_alive_by_extensions_then_released() -> None:
    r = _Run()
    t_end = g.boottime() + 0.4
    while g.boottime() < t_end:
        r.agent.sendall(f"until {g.boottime() + 0.1!r}\n".encode())
        time.sleep(0.03)
    r.agent.sendall(b"release\n")
    r.join()
    assert r.outcome == "released" and r.removed_at is None
    r.agent.close()


def test_serve_handles_lines_split_across_reads() -> None:
    r = _Run()
    r.agent.sendall(b"unt")
    time.sleep(0.02)
    r.agent.sendall(f"il {g.boottime() + 0.05!r}\nrel".encode())
    r.join()  # "rel" without newline is not a release: the deadline fires
    assert r.outcome == "expired" and r.removed_at is not None
    r.agent.close()


# --------------------------------------------------------------------------- netlink


def _parse(msg: bytes) -> tuple[tuple, tuple, dict[int, bytes]]:
    hdr = struct.unpack_from("=IHHII", msg, 0)
    ifa = struct.unpack_from("=BBBBI", msg, 16)
    attrs: dict[int, bytes] = {}
    off = 24
    while off < len(msg):
        length, kind = struct.unpack_from("=HH", msg, off)
        attrs[kind] = msg[off + 4:off + length]
        off += (length + 3) & ~3
    return hdr, ifa, attrs


def test_deladdr_ipv4_matches_on_local_address_only() -> None:
    msg = g.deladdr_message(7, 3, "198.51.100.20", 24)
    (length, kind, flags, seq, _pid), ifa, attrs = _parse(msg)
    assert (length, kind, flags, seq) == (len(msg), g.RTM_DELADDR, g.NLM_F_REQUEST | g.NLM_F_ACK, 7)
    assert ifa == (socket.AF_INET, 24, 0, 0, 3)
    assert attrs == {g.IFA_LOCAL: socket.inet_aton("198.51.100.20")}


def test_deladdr_ipv6_carries_address_and_prefix() -> None:
    msg = g.deladdr_message(1, 9, "fd00:51::20", 64)
    _hdr, ifa, attrs = _parse(msg)
    packed = socket.inet_pton(socket.AF_INET6, "fd00:51::20")
    assert ifa == (socket.AF_INET6, 64, 0, 0, 9)
    assert attrs == {g.IFA_LOCAL: packed, g.IFA_ADDRESS: packed}


def test_ack_errno() -> None:
    def ack(seq: int, err: int) -> bytes:
        return struct.pack("=IHHII", 36, g.NLMSG_ERROR, 0, seq, 0) + struct.pack("=i", err) + b"\0" * 16

    assert g.ack_errno(ack(4, -99), 4) == 99
    assert g.ack_errno(ack(4, 0), 4) == 0
    assert g.ack_errno(ack(3, -1), 4) is None
    assert g.ack_errno(ack(3, -1) + ack(4, -19), 4) == 19
    assert g.ack_errno(b"\0" * 10, 1) is None


def test_remove_reports_missing_interface_without_touching_anything() -> None:
    t = Target("198.51.100.20", 24, "hcv-absent0")
    assert g.remove_addresses([t]) == [(t, "no-interface")]


# --------------------------------------------------------------------------- arguments


def test_target_text_round_trip_and_errors() -> None:
    t = Target.parse("fd00:51::20/64@eth0")
    assert t == Target("fd00:51::20", 64, "eth0") and Target.parse(t.text) == t
    for bad in ("198.51.100.20/24", "198.51.100.20@eth0", "198.51.100.x/24@eth0", "198.51.100.20/33@eth0", "/24@eth0"):
        with pytest.raises((ValueError, OSError)):
            Target.parse(bad)


def test_parse_args() -> None:
    fd, targets, until, name = g.parse_args(["--fd", "5", "--vip", "198.51.100.20/24@eth0", "--vip",
                                             "fd00:51::20/64@eth0", "--until", "12.5", "--name", "store-vip"])
    assert (fd, len(targets), until, name) == (5, 2, 12.5, "store-vip")
    for bad in ([], ["--fd", "5"], ["--vip", "198.51.100.20/24@eth0"], ["--fd"], ["--fd", "x", "--vip", "1.2.3.4/32@e"],
                ["--fd", "5", "--vip", "nope"], ["--what", "1"]):
        with pytest.raises(ValueError):
            g.parse_args(bad)


def test_guard_main_rejects_bad_arguments_with_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert g.main(["--fd", "5", "--vip", "nope"]) == 2
    assert "--vip" in capsys.readouterr().err


# --------------------------------------------------------------------------- the real process


def _rss_kb(pid: int) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _wait_exit(proc: subprocess.Popen, timeout: float) -> int | None:
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        return None


def test_guard_process_own_session_small_and_exits_on_release() -> None:
    # an interface that does not exist: the process is real, but nothing on this host is touched
    client = GuardClient.spawn([Target("198.51.100.20", 24, "hcv-absent0")], until=g.boottime() + 60, name="t")
    bare = subprocess.Popen([sys.executable, "-I", "-S", "-c", "import time; time.sleep(3)"])
    try:
        deadline = time.monotonic() + 5
        while not client.ready() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert client.ready() and client.alive()
        assert os.getsid(client.pid) == client.pid != os.getsid(0)  # survives a kill of our group
        time.sleep(0.2)
        # tiny: no more than a few MB above a bare interpreter (importing kazoo/scapy would be ~+20 MB)
        assert _rss_kb(client.pid) - _rss_kb(bare.pid) < 6000
        assert client.extend(g.boottime() + 60)
        client.release()
        assert _wait_exit(client.proc, 2) == 0
    finally:
        bare.kill()
        bare.wait()
        if client.proc.poll() is None:
            client.proc.kill()


def test_guard_process_exits_when_the_agent_end_closes() -> None:
    client = GuardClient.spawn([Target("198.51.100.20", 24, "hcv-absent0")], name="t")
    try:
        client.close()  # as if the agent died: EOF without release
        assert _wait_exit(client.proc, 3) == 0
        assert not client.alive() and not client.extend(1.0)
    finally:
        if client.proc.poll() is None:
            client.proc.kill()


def test_guard_process_expires_on_its_own() -> None:
    client = GuardClient.spawn([Target("198.51.100.20", 24, "hcv-absent0")], until=g.boottime() + 0.3, name="t")
    try:
        t0 = time.monotonic()
        assert _wait_exit(client.proc, 3) == 0
        assert 0.2 < time.monotonic() - t0 < 1.5
    finally:
        client.close()
        if client.proc.poll() is None:
            client.proc.kill()


def test_kill_tree_kills_only_the_master_of_this_queue_and_its_descendants(tmp_path) -> None:
    """The self-fencing kill: a master whose cwd is the queue directory is killed with its group
    and children; a stale pid file (another host's pid, or a reused one) kills nothing."""
    import os
    import signal
    import subprocess
    import time

    queue = tmp_path / "queue"
    (queue / "pid").mkdir(parents=True)
    master = subprocess.Popen(["sh", "-c", "sleep 60 & sleep 60 & wait"], cwd=queue, start_new_session=True)
    other = subprocess.Popen(["sleep", "60"], cwd=tmp_path, start_new_session=True)
    try:
        time.sleep(0.2)
        table = g._proc_table()
        tree = g.tree_of(master.pid, table)
        assert master.pid in tree and len(tree) == 3 and other.pid not in tree
        (queue / "pid" / "master.pid").write_text(f"{other.pid:>10}\n")
        assert "stale pid file" in g.kill_tree(str(queue / "pid" / "master.pid"))
        assert other.poll() is None
        (queue / "pid" / "master.pid").write_text(f"{master.pid:>10}\n")
        assert g.kill_tree(str(queue / "pid" / "master.pid")) == f"killed 3 process(es) of master {master.pid}"
        master.wait(5)
        time.sleep(0.1)
        assert not [p for p in tree - {master.pid} if _running(p)]
        assert g.kill_tree(str(tmp_path / "absent.pid")) == "no pid file (not running)"
    finally:
        for p in (master, other):
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()


def test_guard_args_take_self_fencing_steps() -> None:
    fd, targets, until, name, steps = g.parse_guard_args(
        ["--fd", "3", "--kill-pidfile", "/q/pid/master.pid", "--umount", "/srv/spool", "--name", "store-guard"])
    assert (fd, targets, name, steps) == (3, [], "store-guard", [("kill-pidfile", "/q/pid/master.pid"), ("umount", "/srv/spool")])
    with pytest.raises(ValueError, match="absolute path"):
        g.parse_guard_args(["--fd", "3", "--umount", "spool"])
    with pytest.raises(ValueError, match="at least one"):
        g.parse_guard_args(["--fd", "3"])


def _running(pid: int) -> bool:
    """Alive and not a zombie waiting for its reaper."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False
