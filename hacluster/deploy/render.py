"""What a target should contain: the paths under its prefix and the text of every file we write.

Pure text in, text out (no SSH here), so the idempotence check is just "does the target's
checksum equal the checksum of what we would write".
"""

from __future__ import annotations

import io
import posixpath
import shlex
from dataclasses import dataclass

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap

from ..errors import UserError
from ..spec import ClusterSpec, parse_spec

AGENT = "hacluster-agent"
ZOOKEEPER = "hacluster-zookeeper"
UNIT_DIR = "/etc/systemd/system"
#: what agents/hacluster-agent.service runs, replaced by the paths under the target's prefix
UNIT_BINARY = "/usr/local/bin/hacluster"
UNIT_SPEC = "/etc/hacluster/cluster.yml"
HEADER = "# Written by `hacluster deploy` ({source}): changes here are overwritten by the next deploy.\n"


@dataclass(frozen=True)
class Layout:
    """Everything of ours on a target lives under its prefix (plus systemd units)."""

    prefix: str

    def path(self, *parts: str) -> str:
        return posixpath.join(self.prefix, *parts)

    @property
    def venvs(self) -> str:
        return self.path("venvs")

    def venv(self, digest: str) -> str:
        return self.path("venvs", digest[:12])

    @property
    def current(self) -> str:
        """Symlink to the active venv: flipped atomically right before a restart, so a running
        agent never sees a half-installed package."""
        return self.path("current")

    @property
    def dist(self) -> str:
        return self.path("dist")

    @property
    def spec(self) -> str:
        return self.path("etc", "cluster.yml")

    @property
    def zk_auth(self) -> str:
        return self.path("etc", "zk.auth")

    @property
    def api_token(self) -> str:
        return self.path("etc", "api.token")

    @property
    def state(self) -> str:
        return self.path("run", "state")

    def supervisor(self, service: str) -> str:
        return self.path("bin", f"{service}-supervise")

    def pidfile(self, service: str) -> str:
        return self.path("run", f"{service}.pid")

    def logfile(self, service: str) -> str:
        return self.path("log", f"{service}.log")

    @property
    def zk_dir(self) -> str:
        return self.path("zookeeper")

    def hacluster(self) -> str:
        return f"{self.current}/bin/hacluster"


def unit_path(service: str) -> str:
    return f"{UNIT_DIR}/{service}.service"


def render_spec(text: str, source: str, zk_auth: str | None, api_token: str | None) -> tuple[str, ClusterSpec]:
    """The spec as deployed: the operator's file with `zookeeper.auth_file` / `api.token_file`
    pointing at the files we write (comments and layout kept). Validated before anything runs."""
    spec = parse_spec(text, source)  # every FILE:LINE problem of the original, before we edit it
    if zk_auth is None and api_token is None:
        return text, spec
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    root = yaml.load(text)
    if zk_auth is not None:
        root["zookeeper"]["auth_file"] = zk_auth
    if api_token is not None:
        if not isinstance(root.get("api"), CommentedMap):
            root["api"] = CommentedMap()
        root["api"]["token_file"] = api_token
    out = io.StringIO()
    yaml.dump(root, out)
    return out.getvalue(), parse_spec(out.getvalue(), source)


def agent_command(layout: Layout, node: str, state_dir: str | None) -> list[str]:
    cmd = [layout.hacluster(), "agent", "--config", layout.spec, "--node", node]
    return cmd + (["--state-dir", state_dir] if state_dir else [])


def render_agent_unit(template: str, source: str, layout: Layout, node: str, state_dir: str | None) -> str:
    """agents/hacluster-agent.service with this target's paths and node name: the binary in
    ExecStart/ExecStopPost, and the unit's `Environment=` defaults (spec, node, state dir), which
    /etc/default/hacluster-agent may still override on the host."""
    default_env = f"Environment=HACLUSTER_CONFIG={UNIT_SPEC} HACLUSTER_NODE=%H\n"
    if default_env not in template or f"ExecStart={UNIT_BINARY} agent --node ${{HACLUSTER_NODE}}" not in template:
        raise UserError(f"{source}: must set `{default_env.strip()}` and run "
                        f"`ExecStart={UNIT_BINARY} agent --node ${{HACLUSTER_NODE}} ...` (deploy fills in the target's values)")
    env = f"Environment=HACLUSTER_CONFIG={layout.spec} HACLUSTER_NODE={node}"
    if state_dir:
        env += f" HACLUSTER_STATE_DIR={state_dir}"
        if not state_dir.startswith("/run/hacluster/"):
            # the unit makes the rest of the OS read-only, and a missing ReadWritePaths= fails the
            # start: created first, outside the sandbox ("+")
            env += f"\nExecStartPre=+/bin/mkdir -p -m 0700 {state_dir}\nReadWritePaths={state_dir}"
    text = template.replace(UNIT_BINARY, layout.hacluster()).replace(default_env, env + "\n", 1)
    return HEADER.format(source=source) + text


def render_supervisor(service: str, layout: Layout, command: list[str], after: list[str] | None = None) -> str:
    """A tiny supervisor for targets without systemd (`service: none`): restart on failure
    (like Restart=on-failure, RestartSec=1), run `after` after every exit (like ExecStopPost),
    SIGTERM stops the child first. It writes its own pid file; `deploy` starts it with setsid."""
    q = shlex.join
    cleanup = f"{q(after)} >/dev/null 2>&1 || true" if after else ":"
    return f"""#!/bin/sh
{HEADER.format(source=f"{service} supervisor, inventory service: none").rstrip()}
pidfile={shlex.quote(layout.pidfile(service))}
echo $$ > "$pidfile"
child=
cleanup() {{ {cleanup}; }}
stop() {{
  if [ -n "$child" ]; then kill -TERM "$child" 2>/dev/null; wait "$child" 2>/dev/null; fi
  cleanup
  rm -f "$pidfile"
  exit 0
}}
trap stop TERM INT HUP
while :; do
  {q(command)} &
  child=$!
  wait "$child"
  rc=$?
  child=
  cleanup
  [ "$rc" -eq 0 ] && break
  echo "$(date '+%F %T') {service}: exited with status $rc, restarting in 1s" >&2
  sleep 1 &
  wait $!
done
rm -f "$pidfile"
"""


def render_zk_unit(command: list[str]) -> str:
    return HEADER.format(source="ZooKeeper server of the cluster") + f"""[Unit]
Description=ZooKeeper server for hacluster
Wants=network-online.target
After=network-online.target

[Service]
Type=simple
ExecStart={shlex.join(command)}
Restart=on-failure
RestartSec=2
TimeoutStopSec=20

[Install]
WantedBy=multi-user.target
"""
