"""Health checks against a real Postfix instance: a private config/queue/data directory started
with `postfix -c DIR start`, smtpd on 127.0.0.1:<free port>, every message relayed to
[127.0.0.1]:1 where nothing listens (so mail defers and never leaves the host). The default
/etc/postfix is not touched: root may use `-c DIR` without `alternate_config_directories`."""

from __future__ import annotations

import json
import os
import shutil
import signal
import smtplib
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import psutil
import pytest

from hacluster.health.checks import Check, HealthMonitor
from hacluster.health.mta import MtaProcessCheck, RestartBudget
from hacluster.health.policy import evaluate
from hacluster.health.queue import QueueCheck
from hacluster.health.smtp import SmtpProbe
from .postfix_conf import MASTER_CF, main_cf




def sh(*cmd: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Instance:
    base: Path
    port: int

    @property
    def config_dir(self) -> str:
        return str(self.base / "etc")

    def master_pid(self) -> int | None:
        try:
            return int((self.base / "queue" / "pid" / "master.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def start(self) -> None:
        out = sh("postfix", "-c", self.config_dir, "start")
        assert out.returncode == 0, out.stderr + self.log()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("smtpd never listened\n" + self.log())

    def stop(self) -> None:
        sh("postfix", "-c", self.config_dir, "abort")
        pid = self.master_pid()
        if pid and psutil.pid_exists(pid):
            try:
                if psutil.Process(pid).name() == "master":
                    os.kill(pid, signal.SIGKILL)
            except (psutil.Error, OSError):
                pass

    def log(self) -> str:
        try:
            return (self.base / "maillog").read_text()[-3000:]
        except OSError:
            return ""


@pytest.fixture(scope="module")
def postfix_factory() -> Iterator[Callable[[], Instance]]:
    made: list[Instance] = []

    def make() -> Instance:
        base = Path(tempfile.mkdtemp(prefix="hch-pf-", dir="/var/tmp"))
        base.chmod(0o755)  # the postfix user must traverse it
        for sub in ("etc", "queue", "data"):
            (base / sub).mkdir()
        shutil.chown(base / "data", "postfix")
        inst = Instance(base, free_port())
        made.append(inst)
        (base / "etc" / "main.cf").write_text(main_cf(base, "store-test.example"))
        (base / "etc" / "master.cf").write_text(MASTER_CF.format(port=inst.port))
        inst.start()
        return inst

    yield make
    for inst in made:
        inst.stop()
        shutil.rmtree(inst.base, ignore_errors=True)


@pytest.fixture(scope="module")
def pf(postfix_factory) -> Instance:
    return postfix_factory()


def test_smtp_probe_against_postfix(pf: Instance) -> None:
    res = SmtpProbe("127.0.0.1", pf.port)(2.0)
    assert (res.ok, res.severity) == (True, "ok"), res.detail
    assert res.data["banner"].startswith("store-test.example ESMTP Postfix")
    assert "PIPELINING" in res.data["extensions"] and "8BITMIME" in res.data["extensions"]
    assert res.latency_s < 0.5


def test_mta_check_finds_this_instances_master(pf: Instance) -> None:
    res = MtaProcessCheck(pf.config_dir)(2.0)
    assert (res.ok, res.severity, res.data["running"]) == (True, "ok", True), res.detail
    assert res.data["pid"] == pf.master_pid() and psutil.Process(res.data["pid"]).name() == "master"
    assert res.data["queue_directory"] == str(pf.base / "queue")
    assert res.data["data_directory"] == str(pf.base / "data")


def other_instance_dir(tmp_path: Path, pid: int) -> str:
    """A config dir whose pid file names `pid` (a process that is not this instance's master)."""
    etc, queue, data = tmp_path / "etc", tmp_path / "queue", tmp_path / "data"
    for d in (etc, queue / "pid", data):
        d.mkdir(parents=True)
    (etc / "main.cf").write_text(f"queue_directory = {queue}\ndata_directory = {data}\n")
    (queue / "pid" / "master.pid").write_text(f"{pid:>33}\n")
    return str(etc)


def test_another_instances_master_does_not_count(pf: Instance, tmp_path: Path) -> None:
    res = MtaProcessCheck(other_instance_dir(tmp_path, pf.master_pid()))(2.0)
    assert (res.severity, res.data["running"]) == ("crit", False)
    assert f"is the master of {pf.config_dir}" in res.detail


def test_stale_pid_file_does_not_count(tmp_path: Path) -> None:
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        res = MtaProcessCheck(other_instance_dir(tmp_path, sleeper.pid))(2.0)
        assert res.data["running"] is False
        assert "is 'sleep', not master (stale pid file)" in res.detail
    finally:
        sleeper.kill()
        sleeper.wait(5)


def test_missing_config_dir_is_not_restartable(tmp_path: Path) -> None:
    res = MtaProcessCheck(str(tmp_path / "nope"))(2.0)
    assert (res.data["running"], res.data["restartable"]) == (False, False)
    assert evaluate({"mta": res}).demote


def send(port: int, n: int, tag: str) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=5) as s:
        for i in range(n):
            s.sendmail("sender@example.org", [f"user{i}@example.net"],
                       f"Subject: {tag} {i}\r\nMessage-ID: <{tag}.{i}@test>\r\n\r\nbody\r\n")


def wait_queue(pf: Instance, want: dict, timeout: float = 20) -> dict:
    check = QueueCheck(pf.config_dir)
    deadline = time.monotonic() + timeout
    counts: dict = {}
    while time.monotonic() < deadline:
        counts = check(5.0).data.get("counts", {})
        if counts == want:
            return counts
        time.sleep(0.2)
    raise AssertionError(f"queue {counts} never became {want}\n{pf.log()}")


def test_queue_check_on_real_postqueue(pf: Instance) -> None:
    send(pf.port, 3, "queue")
    wait_queue(pf, {"deferred": 3})
    listing = sh("postqueue", "-c", pf.config_dir, "-j").stdout.splitlines()
    queue_id = json.loads(listing[0])["queue_id"]
    assert sh("postsuper", "-c", pf.config_dir, "-h", queue_id).returncode == 0
    res = QueueCheck(pf.config_dir)(5.0)
    assert (res.ok, res.severity) == (True, "ok"), res.detail
    assert res.data["counts"] == {"deferred": 2, "hold": 1} and res.data["total"] == 3
    assert res.data["top_deferral_reasons"] == [["connect to 127.0.0.1[127.0.0.1]:1: Connection refused", 3]]
    assert 0 <= res.data["oldest_age_s"] < 120 and res.data["bad_lines"] == 0
    assert res.detail == "queue deferred=2 hold=1"
    strict = QueueCheck(pf.config_dir, warn_messages=2)(5.0)
    assert strict.severity == "warn" and strict.detail.endswith("3 messages > 2")
    sh("postsuper", "-c", pf.config_dir, "-d", "ALL")
    sh("postsuper", "-c", pf.config_dir, "-d", "ALL", "hold")
    wait_queue(pf, {})


def test_kill_master_restart_or_demote(postfix_factory) -> None:
    """MTA killed -> unhealthy while a restart may help -> demote once the budget is spent;
    the queue stays listable (postqueue reads the queue directly when the master is down)."""
    inst = postfix_factory()
    budget = RestartBudget(max_restarts=2, window_s=60)
    mta = MtaProcessCheck(inst.config_dir, restarts=budget)
    mon = HealthMonitor([Check("mta", mta, interval_s=0.1, timeout_s=2, rise=1, fall=2),
                         Check("smtp", SmtpProbe("127.0.0.1", inst.port), interval_s=0.1, timeout_s=1, rise=1, fall=2)])
    assert evaluate(mon.run_all_once(), required=("mta", "smtp")).healthy
    pid = inst.master_pid()
    os.kill(pid, signal.SIGKILL)
    try:
        psutil.Process(pid).wait(5)
    except psutil.NoSuchProcess:
        pass
    first = mon.run_all_once()
    assert first["mta"].ok  # fall=2: one failure is not enough
    verdict = evaluate(mon.run_all_once())
    assert (verdict.healthy, verdict.demote) == (False, False)
    assert "mta: master dead, restart still possible" in verdict.reasons[0]
    assert QueueCheck(inst.config_dir)(5.0).ok

    for _ in range(2):  # the agent's restarts; each one dies again
        budget.note_attempt()
        inst.start()
        assert mon.run_all_once()["mta"].ok
        os.kill(inst.master_pid(), signal.SIGKILL)
        time.sleep(0.2)
    mon.run_all_once()
    verdict = evaluate(mon.run_all_once())
    assert verdict.demote, verdict
    assert verdict.reasons[0].startswith("mta: master dead and not restartable")
