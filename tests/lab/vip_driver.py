"""Child process for the VIP lab tests: runs one VipResource (built from the embedded lab spec
through the real factory builder) inside a network namespace and answers JSON-line commands
on stdin: ping, prepare, unprepare, start, stop, monitor, extend {in: seconds}, status, metrics, exit."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from pathlib import Path

from prometheus_client import REGISTRY

from hacluster import clock
from hacluster.resources.factory import ResourceContext
from hacluster.resources.vip import build
from hacluster.spec import load_spec


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--node", required=True)
    ap.add_argument("--role", default="store")
    ap.add_argument("--state-dir", default=tempfile.gettempdir(), help="where the VIP record goes")
    ap.add_argument("--param", action="append", default=[], help="KEY=JSON resource param")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    spec = load_spec(None)
    role = spec.roles[args.role]
    res = next(r for r in role.resources if r.type == "vip")
    params = dict(res.params)
    for kv in args.param:
        k, _, v = kv.partition("=")
        params[k] = json.loads(v)
    ctx = ResourceContext(spec, role, spec.node(args.node), Path(args.state_dir))
    vip = build(res, params, ctx)

    def metric(name: str) -> dict[str, float]:
        return {t.ip: REGISTRY.get_sample_value(name, {"vip": t.ip}) or 0.0 for t in vip.targets}

    for line in sys.stdin:
        cmd = json.loads(line)
        op = cmd["op"]
        if op == "ping":
            out: dict = {"ok": True}
        elif op == "start":
            t0 = clock.now()
            rc = vip.start()
            out = {"rc": int(rc), "call_s": clock.now() - t0, "status": vip.status()}
        elif op == "prepare":
            t0 = clock.now()
            vip.prepare()
            out = {"call_s": clock.now() - t0}
        elif op == "unprepare":
            vip.unprepare()
            out = {"ok": True}
        elif op == "stop":
            t0 = clock.now()
            rc = vip.stop()
            out = {"rc": int(rc), "call_s": clock.now() - t0}
        elif op == "monitor":
            out = {"rc": int(vip.monitor())}
        elif op == "extend":
            until = clock.now() + float(cmd["in"])
            vip.lease_extended(until)
            out = {"until": until, "now": clock.now()}
        elif op == "status":
            out = vip.status()
        elif op == "metrics":
            out = {"conflicts": metric("hacluster_vip_conflicts_total"),
                   "foreign_claims": metric("hacluster_vip_foreign_claims_total")}
        elif op == "exit":
            print(json.dumps({"ok": True}), flush=True)
            return 0
        else:
            out = {"error": f"unknown op {op}"}
        print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
