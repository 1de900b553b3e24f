"""The OpenAPI 3.1 description of the agent's REST API (served at GET /openapi.json).

Built from the cluster spec, so role and node names are enums: a client generator or a fuzzer
(schemathesis in tests/integration/test_api_fuzz.py) knows the valid values, and the document
stays true to the one cluster it describes. Every status the API sends is listed, including the
designed 503s of /health and /leader (load balancers act on them) and the 5xx a ZooKeeper outage
gives POST /switchover. POST /failsafe is the agents' own: a holder cut off from ZooKeeper asks
its tier peers (failsafe mode, hacluster/failsafe.py).
"""

from __future__ import annotations

from typing import Any

from hacluster.spec import ClusterSpec
from hacluster.timing import MAX_LEASE_S

JSON = "application/json"


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(t: str) -> dict[str, Any]:
    return {"type": [t, "null"]}


def schemas(spec: ClusterSpec) -> dict[str, Any]:
    roles, nodes = sorted(spec.roles), sorted(spec.nodes)
    return {
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {"type": "string", "description": "what was wrong, in one line"},
                "field": {"type": "string", "description": "the request field at fault (400 only)"},
                "roles": {"type": "array", "items": {"type": "string"}},
                "endpoints": {"type": "array", "items": {"type": "string"}},
            },
        },
        "RoleStatus": {
            "type": "object",
            "required": ["held", "term", "lease_remaining_s", "lease_age_s", "verdict", "resources"],
            "properties": {
                "held": {"type": "boolean"},
                "term": {**_nullable("integer"), "description": "fencing token of our lease, null if not held"},
                "lease_remaining_s": _nullable("number"),
                "lease_age_s": _nullable("number"),
                "verdict": {**_nullable("string"), "description": "the last decision, as logged"},
                "resources": {"type": "array", "items": {"type": "string"}},
            },
        },
        "Status": {
            "type": "object",
            "required": ["node", "tier", "zookeeper", "healthy", "health", "reasons", "maintenance", "roles", "loops"],
            "properties": {
                "node": {"type": "string", "enum": nodes},
                "tier": {"type": "string"},
                "zookeeper": {"type": "string", "description": "connected, suspended or lost"},
                "healthy": {"type": "boolean"},
                "health": {"type": "object"},
                "reasons": {"type": "array", "items": {"type": "string"}},
                "maintenance": {"type": "boolean"},
                "config": {"type": "object", "description": "digests of this agent's timing and roles, as its "
                           "heartbeat publishes them: {timing, roles, lease_s, margin_s}"},
                "config_mismatch": {"type": "object", "description": "peers whose digest differs from ours: "
                                    "node -> the differing parts (timing, roles, unknown)",
                                    "additionalProperties": {"type": "array", "items": {"type": "string"}}},
                "roles": {"type": "object", "additionalProperties": _ref("RoleStatus")},
                "loops": {"type": "integer", "minimum": 0},
                "failsafe": {"type": "object", "description": "failsafe mode: on here, and the promises this node "
                             "gave holders cut off from ZooKeeper: role -> {holder, term, remaining_s}"},
                "fences": {"type": "object", "description": "host fencing this node ran before a takeover (ha.py "
                           "rules 15-19): role -> node -> {term, state: running|off|failed, age_s, detail}"},
            },
        },
        "Health": {
            "type": "object",
            "required": ["healthy", "reasons"],
            "additionalProperties": False,
            "properties": {"healthy": {"type": "boolean"}, "reasons": {"type": "array", "items": {"type": "string"}}},
        },
        "Leader": {
            "type": "object",
            "required": ["node", "holds"],
            "additionalProperties": False,
            "properties": {"node": {"type": "string", "enum": nodes},
                           "holds": {"type": "array", "items": {"type": "string", "enum": roles}}},
        },
        "SwitchoverRequest": {
            "type": "object",
            "required": ["role"],
            "additionalProperties": False,
            "properties": {
                "role": {"type": "string", "enum": roles},
                "to": {"type": ["string", "null"], "enum": [*nodes, None],
                       "description": "the node to move to; null or absent: the best candidate"},
            },
        },
        "FailsafeQuestion": {
            "type": "object",
            "required": ["role", "holder", "term", "lease_s"],
            "additionalProperties": False,
            "properties": {
                "role": {"type": "string", "enum": roles},
                "holder": {"type": "string", "enum": nodes, "description": "the asking holder (confirmed only from "
                           "another node of the role's tier)"},
                "term": {"type": "integer", "minimum": 0, "maximum": 2**53 - 1, "description": "its fencing token"},
                "lease_s": {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_LEASE_S,
                            "description": "the holder's lease_s: a promise lasts at least this long"},
            },
        },
        "FailsafeAnswer": {
            "type": "object",
            "required": ["node", "role", "term", "confirmed", "reason"],
            "additionalProperties": False,
            "properties": {
                "node": {"type": "string", "enum": nodes},
                "role": {"type": "string", "enum": roles},
                "term": {"type": "integer"},
                "confirmed": {"type": "boolean", "description": "holds nothing, sees no other holder, cannot reach "
                              "ZooKeeper, failsafe on: and promised"},
                "reason": {"type": "string"},
                "promise_s": {"type": "number", "description": "confirmed only: will not acquire ROLE for this long"},
            },
        },
        "SwitchoverAccepted": {
            "type": "object",
            "required": ["accepted", "role", "to"],
            "additionalProperties": False,
            "properties": {"accepted": {"const": True}, "role": {"type": "string", "enum": roles},
                           "to": {"type": ["string", "null"], "enum": [*nodes, None]}},
        },
    }


def document(spec: ClusterSpec, node: str | None = None) -> dict[str, Any]:
    err = _ref("Error")
    leader = {
        "200": _json(_ref("Leader"), "this node holds the role (or, without a role, any role)"),
        "503": _json(_ref("Leader"), "this node holds none of them"),
    }
    info = {
            "title": f"hacluster agent API ({spec.name}{', ' + node if node else ''})",
            "version": "1",
            "description": "One node agent's view and the operator's switchover. Reads are open; "
                           "writes need `Authorization: Bearer TOKEN` (api.token_file). See docs/security.md.",
    }
    paths: dict[str, Any] = {
        "/status": {"get": {"operationId": "status", "summary": "this agent's view",
                            "responses": {"200": _json(_ref("Status"), "health, roles held, last verdicts")}}},
        "/health": {"get": {"operationId": "health", "summary": "may this node hold roles (for load balancers)",
                            "responses": {"200": _json(_ref("Health"), "healthy"),
                                          "503": _json(_ref("Health"), "not healthy: reasons say why")}}},
        "/leader": {"get": {"operationId": "leader", "summary": "does this node hold any role", "responses": leader}},
        "/leader/{role}": {"get": {
            "operationId": "leaderOfRole", "summary": "does this node hold ROLE",
            "parameters": [{"name": "role", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": {**leader, "404": _json(err, "this node serves no such role")},
        }},
        "/metrics": {"get": {"operationId": "metrics", "summary": "Prometheus metrics",
                             "responses": {"200": {"description": "text exposition format",
                                                   "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
        "/openapi.json": {"get": {"operationId": "openapi", "summary": "this document",
                                  "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1")}}},
        "/switchover": {"post": {
            "operationId": "switchover",
            "summary": "ask the holder of ROLE to hand it over (to TO, or to the best candidate)",
            "security": [{"bearer": []}],
            "requestBody": {"required": True, "content": {JSON: {"schema": _ref("SwitchoverRequest")}}},
            "responses": {
                "202": _json(_ref("SwitchoverAccepted"), "recorded in ZooKeeper; the holder acts on its next loop"),
                "400": _json(err, "not JSON, unknown field (named in `field`), wrong type, unknown role or node"),
                "401": _json(err, "missing or wrong bearer token"),
                "403": _json(err, "this agent has no token configured: writes are off"),
                "409": _json(err, "refused in the cluster's current state (target unhealthy, already holder, nobody holds)"),
                "415": _json(err, "Content-Type is not application/json"),
                "503": _json(err, "ZooKeeper unavailable"),
            },
        }},
        "/failsafe": {"post": {
            "operationId": "failsafe",
            "summary": "failsafe mode: may the holder of ROLE go on while ZooKeeper is unreachable",
            "description": "Asked by a holder of every other node of its tier, each loop of a ZooKeeper outage. "
                           "A confirmation records this node's promise not to acquire ROLE for promise_s.",
            "security": [{"bearer": []}],
            "requestBody": {"required": True, "content": {JSON: {"schema": _ref("FailsafeQuestion")}}},
            "responses": {
                "200": _json(_ref("FailsafeAnswer"), "this node's answer (confirmed or not, with the reason)"),
                "400": _json(err, "not JSON, unknown field, wrong type, unknown role or node"),
                "401": _json(err, "missing or wrong bearer token"),
                "403": _json(err, "this agent has no token configured: writes are off"),
                "415": _json(err, "Content-Type is not application/json"),
            },
        }},
    }
    return {
        "openapi": "3.1.0",
        "info": info,
        "paths": paths,
        "components": {
            "schemas": schemas(spec),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
