"""The operator's tooling on a live cluster: `client` holds `status`, `switchover`, `failover`,
`maintenance`, `history` and the HTTP request helper the servers' callers share.

A package, not `operator.py`: that name shadowed the standard library's `operator`."""
