"""One SSH connection per target (Fabric), with errors turned into one line that names the
target and what to do about it.

Every command runs as `sh -c SCRIPT` (with `sudo -n` in front when the inventory says
`become: true`), so scripts behave the same whatever the login shell is.

Fabric, paramiko and invoke come with the `deploy` extra (`pip install 'hacluster[deploy]'`): a
mail node runs the agent and never deploys, so its venv goes without them (README: venv size).
They are imported where used; `require_ssh()` says which extra is missing before anything starts.
"""

from __future__ import annotations

import importlib.util
import io
import os
import shlex
import socket
from dataclasses import dataclass

from hacluster.errors import UserError
from hacluster.deploy.inventory import Host

#: what `hacluster deploy` imports beyond the core install: the `deploy` extra in pyproject.toml
SSH_MODULES = ("fabric", "paramiko", "invoke")

#: seconds a single remote command may take (a package install is the slowest)
DEFAULT_TIMEOUT_S = 120.0


def require_ssh(what: str = "hacluster deploy") -> None:
    """A one-line UserError naming the extra to install when an SSH module is missing."""
    missing = [m for m in SSH_MODULES if importlib.util.find_spec(m) is None]
    if missing:
        raise UserError(f"{what} needs the 'deploy' extra ({', '.join(missing)} not installed): "
                        "pip install 'hacluster[deploy]'")


class RemoteError(Exception):
    """A step failed on a target; str() is the reason (the caller adds host and step)."""


@dataclass(frozen=True)
class Result:
    rc: int
    out: str
    err: str

    def tail(self, n: int = 3) -> str:
        lines = [ln.strip() for ln in (self.err or self.out).splitlines() if ln.strip()]
        return " | ".join(lines[-n:]) or f"exit {self.rc}, no output"


class Remote:
    def __init__(self, host: Host) -> None:
        self.host = host
        self.conn = None  # fabric.Connection once open

    def open(self) -> None:
        """Connect with key authentication; unknown host keys are refused unless the inventory
        sets `host_key_checking: false`."""
        import paramiko
        from fabric import Config, Connection

        h = self.host
        key = h.var("ssh_key")
        if key and not os.path.isfile(key):
            raise RemoteError(f"ssh_key {key}: no such file")
        known = h.var("known_hosts")
        if known and not os.path.isfile(known):
            raise RemoteError(f"known_hosts {known}: no such file")
        kwargs = {"look_for_keys": not key, "allow_agent": not key, "banner_timeout": h.var("connect_timeout"),
                  "auth_timeout": h.var("connect_timeout")}
        if key:
            kwargs["key_filename"] = [key]
        # an explicit, empty ssh_config: the inventory alone says where and how to connect
        config = Config(ssh_config=paramiko.SSHConfig())
        conn = Connection(h.address, user=h.var("ssh_user"), port=h.var("ssh_port"), config=config,
                          connect_timeout=int(h.var("connect_timeout")), connect_kwargs=kwargs)
        client = conn.client
        if h.var("host_key_checking"):
            client.set_missing_host_key_policy(paramiko.RejectPolicy())
            # the inventory's file replaces ~/.ssh/known_hosts (like ssh's UserKnownHostsFile)
            if known:
                client.get_host_keys().load(known)
            else:
                client.load_system_host_keys()
        try:
            conn.open()
        except paramiko.BadHostKeyException as err:
            raise RemoteError(f"host key of {h.address} does not match known_hosts ({err.expected_key.get_name()} expected): "
                              "man-in-the-middle or a reinstalled host; fix known_hosts") from None
        except paramiko.AuthenticationException as err:
            how = f"key {key}" if key else "ssh-agent / ~/.ssh keys"
            raise RemoteError(f"authentication failed for {h.target} with {how} ({err})") from None
        except paramiko.SSHException as err:
            text = str(err)
            if "not found in known_hosts" in text:
                raise RemoteError(f"unknown host key for {h.address}: add it to known_hosts "
                                  f"({known or '~/.ssh/known_hosts'}) or set host_key_checking: false") from None
            raise RemoteError(f"ssh to {h.target}: {text}") from None
        except (socket.timeout, TimeoutError):
            raise RemoteError(f"cannot connect to {h.target}: timed out after {h.var('connect_timeout'):g}s") from None
        except OSError as err:
            raise RemoteError(f"cannot connect to {h.target}: {getattr(err, 'strerror', None) or err}") from None
        self.conn = conn

    def close(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            except Exception:  # closing a dead transport must not hide the real error
                pass
            self.conn = None

    def sh(self, script: str, *, privileged: bool = True, timeout: float = DEFAULT_TIMEOUT_S) -> Result:
        """Run a shell script; never raises for a non-zero exit (callers decide)."""
        import paramiko
        from invoke.exceptions import CommandTimedOut

        assert self.conn is not None, "open() first"
        cmd = "sh -c " + shlex.quote(script)
        if privileged and self.host.var("become") and self.host.var("ssh_user") != "root":
            cmd = "sudo -n " + cmd
        try:
            r = self.conn.run(cmd, hide=True, warn=True, in_stream=False, timeout=timeout)
        except CommandTimedOut:
            raise RemoteError(f"command timed out after {timeout:g}s: {script.strip().splitlines()[0][:80]}") from None
        except (OSError, EOFError, paramiko.SSHException) as err:
            raise RemoteError(f"connection to {self.host.target} lost: {err}") from None
        return Result(r.return_code, r.stdout, r.stderr)

    def check(self, script: str, what: str, **kw: object) -> Result:
        """Run a script that must succeed; RemoteError with its last lines otherwise."""
        r = self.sh(script, **kw)  # type: ignore[arg-type]
        if r.rc != 0:
            raise RemoteError(f"{what}: {r.tail()}")
        return r

    def put(self, local: str | bytes, remote: str) -> None:
        """Upload a local file (path) or bytes to `remote` (as the login user, into our temp dir)."""
        import paramiko

        assert self.conn is not None
        try:
            if isinstance(local, bytes):
                self.conn.put(io.BytesIO(local), remote)
            else:
                self.conn.put(local, remote)
        except paramiko.SSHException as err:
            raise RemoteError(f"upload to {remote} failed: {err} (does the target's sshd offer the sftp subsystem?)") from None
        except (OSError, EOFError) as err:
            raise RemoteError(f"upload to {remote} failed: {getattr(err, 'strerror', None) or err}") from None
