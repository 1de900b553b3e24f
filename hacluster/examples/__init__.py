"""The product's example specs: lab.yml (the worked example of every section, the cluster the lab
toolkit builds), scenarios/ (`hacluster mx simulate --scenario`), and `loopback_spec` -- the
smallest cluster an agent runs: N store nodes on loopback addresses holding one role whose only
resource is a marker file. The unit tests build their agents from it without the lab toolkit, and
the toolkit's LocalCluster runs real agents on it."""

from __future__ import annotations

MARKER_ROLE = """\
  {role}:
    tier: store
    resources:
      - type: command
        name: marker
        start: "echo $HACLUSTER_TOKEN > {{state_dir}}/RUNNING"
        stop: "rm -f {{state_dir}}/RUNNING"
        monitor: "test -f {{state_dir}}/RUNNING || exit 7"
        timeout_s: 5
"""

LOOPBACK_TEMPLATE = """\
cluster: {cluster}
mail: {{domain: demo.example}}
zookeeper:
  hosts: [{zk_hosts}]
  chroot: /hacluster
  session_timeout_s: {session_timeout}
timing:
  profile: {profile}
roles:
{roles}nodes:
{nodes}
api:
  port: {api_port}
"""


def marker_role(role: str = "store") -> str:
    """The `roles:` entry of a store role whose only resource is a marker file in the agent's state
    dir (holding the fencing token): what tests use where a real mail resource is beside the point."""
    return MARKER_ROLE.format(role=role)


def loopback_spec(zk_hosts: str, n: int = 3, profile: str = "default", cluster: str = "demo", role: str = "store",
                  session_timeout: float = 4.0, api_port: int = 0) -> str:
    """The spec's text: nodes node1..nodeN at 127.0.0.11.. on `lo`, node1 the most preferred;
    `zk_hosts` comma-separated host:port; `api_port` 0 = any free port."""
    nodes = "\n".join(
        f"  - {{name: node{i}, tier: store, interface: lo, addresses: [127.0.0.{10 + i}/8], priority: {110 - 10 * i}}}"
        for i in range(1, n + 1)
    )
    return LOOPBACK_TEMPLATE.format(cluster=cluster, zk_hosts=", ".join(zk_hosts.split(",")), profile=profile,
                                    roles=marker_role(role), nodes=nodes,
                                    session_timeout=session_timeout, api_port=api_port)
