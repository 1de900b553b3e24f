"""What runs on a mail node: the agent's loop (`loop`), its node health checks (`node_health`),
the claims log it writes and the tests read (`claims`), the resource monitor, systemd's
sd_notify and the packaged agent files (the unit, OCF scripts, alert rules)."""
