"""web.failsafe_view row by row: what the operator page shows of failsafe mode, from the agents'
own status (agents_view.summary), never from ZooKeeper."""

from __future__ import annotations

from typing import Any

import pytest

from hacluster.spec import parse_spec
from hacluster.http.web import failsafe_view

SPEC = """cluster: c
zookeeper: {hosts: ["127.0.0.1:2181"]}
failsafe: %s
api: {port: 8751}
roles:
  store: {tier: store}
nodes:
  - {name: s1, tier: store, interface: lo, addresses: [127.0.0.11/8], priority: 100}
  - {name: s2, tier: store, interface: lo, addresses: [127.0.0.12/8], priority: 90}
"""


def agent(failsafe: bool = True, held: dict[str, Any] | None = None, promises: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"zookeeper": "connecting", "healthy": True, "failsafe": failsafe, "held": held or {}, "promises": promises or {}}


ON_FS = {"store": {"term": 4, "remaining_s": 0.61, "on_failsafe": True}}
VIA_ZK = {"store": {"term": 4, "remaining_s": 0.61, "on_failsafe": False}}
PROMISE = {"store": {"holder": "s1", "term": 4, "remaining_s": 0.8}}

ROWS = [
    # (what, spec flag, agents' summary, holding [(node, role)], promises {node: [(role, holder)]}, mismatch)
    ("failsafe off: nothing asked, nobody answered", False, None, [], {}, []),
    ("holder on failsafe, its peer promised", True, {"s1": agent(held=ON_FS), "s2": agent(promises=PROMISE)},
     [("s1", "store")], {"s2": [("store", "s1")]}, []),
    ("holder renewing through ZooKeeper: not on failsafe", True, {"s1": agent(held=VIA_ZK), "s2": agent()}, [], {}, []),
    ("a silent agent: not answered, nothing invented", True, {"s1": agent(held=ON_FS), "s2": None},
     [("s1", "store")], {}, []),
    ("an agent running with failsafe off while the spec says on", True, {"s1": agent(), "s2": agent(failsafe=False)},
     [], {}, ["s2"]),
]


@pytest.mark.parametrize("what,flag,agents,holding,promises,mismatch", ROWS, ids=[r[0] for r in ROWS])
def test_failsafe_view(what: str, flag: bool, agents: dict[str, Any] | None, holding: list[tuple[str, str]],
                       promises: dict[str, list[tuple[str, str]]], mismatch: list[str]) -> None:
    spec = parse_spec(SPEC % ("true" if flag else "false"), "test.yml")
    v = failsafe_view(spec, agents)
    assert v["enabled"] is flag and v["asked"] is (agents is not None)
    assert [(f["node"], f["role"]) for f in v["holding"]] == holding
    assert all(f["term"] == 4 and f["remaining_s"] == 0.61 for f in v["holding"])
    assert {n: [(p["role"], p["holder"]) for p in x["promises"]] for n, x in v["nodes"].items() if x["promises"]} == promises
    assert v["mismatch"] == mismatch
    assert set(v["nodes"]) == {"s1", "s2"}
    assert [n for n, x in v["nodes"].items() if x["answered"]] == [n for n in ("s1", "s2") if (agents or {}).get(n)]
