"""The two HTTP servers: the agent's REST API (`api`, its OpenAPI document in `openapi`, the
switchover body both parse in `switchover_body`) and the read-only status page (`web`)."""
