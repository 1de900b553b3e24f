"""The house's import graph: no circles, the product apart from the lab toolkit, a pure core.

The graph is read from the source with `ast`, so it sees every import: at module level, inside
functions (where a circle hides at run time), and under `if TYPE_CHECKING:` (two modules that name
each other's types know each other too). Relative imports are resolved; `from pkg import name`
counts as an import of the submodule `pkg.name` when there is one.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: the two distributions: the product (hacluster) and the lab toolkit (lab/: hacluster-lab)
PKGS = (ROOT / "hacluster", ROOT / "lab" / "hacluster_lab")

#: import circles we still live with: (sorted members, why). Empty: keep it so.
ALLOWED_CIRCLES: dict[tuple[str, ...], str] = {}

#: the lab toolkit, a distribution of its own: network-namespace labs, benches, chaos, drills (their
#: playbooks are its package data), the lab side of mx, the local test cluster and the demo
LAB = ("hacluster_lab", "hacluster_lab.lab", "hacluster_lab.bench", "hacluster_lab.chaos", "hacluster_lab.drill",
       "hacluster_lab.localcluster", "hacluster_lab.demo", "hacluster_lab.mx")

#: what a mail node runs and what its operator uses, by package: the agent (loop, node health,
#: claims), the coordination layer, the policy core and its neighbours, resources, health checks,
#: the spool, the HTTP servers, the operator's commands, deploy (with the inventory), the mx model
PRODUCT = ("hacluster", "hacluster.__main__", "hacluster.cli", "hacluster.completion", "hacluster.errors",
           "hacluster.logsetup", "hacluster.clock", "hacluster.timing", "hacluster.units", "hacluster.yamlread",
           # the agent on a mail node
           "hacluster.agent", "hacluster.metrics", "hacluster.notify", "hacluster.zkconfig", "hacluster.zkserver",
           # the pure policy core and the decisions beside it
           "hacluster.ha", "hacluster.ha_local", "hacluster.graceful", "hacluster.failsafe", "hacluster.fence",
           "hacluster.exercise", "hacluster.drift", "hacluster.guard_bound", "hacluster.config_digest",
           # the spec and its CLI
           "hacluster.spec", "hacluster.spec_cli", "hacluster.spec_reference", "hacluster.notify_config",
           "hacluster.fence_spec", "hacluster.placement_spec", "hacluster.config_path", "hacluster.examples",
           "hacluster.coord", "hacluster.resources", "hacluster.health", "hacluster.spool", "hacluster.http",
           # the operator's tools
           "hacluster.operator", "hacluster.placement_cli", "hacluster.agents_view", "hacluster.confirm",
           "hacluster.lab_access", "hacluster.deploy", "hacluster.plotting", "hacluster.mx")


def modules() -> dict[str, tuple[Path, bool]]:
    out = {}
    for pkg in PKGS:
        for p in sorted(pkg.rglob("*.py")):
            parts = list(p.relative_to(pkg.parent).with_suffix("").parts)
            is_pkg = parts[-1] == "__init__"
            out[".".join(parts[:-1] if is_pkg else parts)] = (p, is_pkg)
    return out


#: the pure decision core: importing it must not load anything that talks to the world
PURE = ("hacluster.ha", "hacluster.ha_local")
IO_MODULES = ("smtplib", "socket", "ssl", "subprocess", "select", "http", "email", "urllib.request",
              "kazoo", "psutil", "hacluster.notify", "hacluster.coord.session")


def imports(mods: dict[str, tuple[Path, bool]]) -> dict[str, dict[str, int]]:
    """module -> {imported hacluster module: line of the first such import}."""
    def known(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, dict[str, int]] = {}
    for mod, (path, is_pkg) in mods.items():
        pkg = mod if is_pkg else mod.rpartition(".")[0]
        edges: dict[str, int] = {}
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                    src = ".".join(base + ([node.module] if node.module else []))
                else:
                    src = node.module or ""
                targets = [f"{src}.{a.name}" if f"{src}.{a.name}" in mods else src for a in node.names]
            for t in targets:
                k = known(t) if t.startswith("hacluster") else None
                if k is not None and k != mod:
                    edges.setdefault(k, node.lineno)
        graph[mod] = edges
    return graph


def circles(graph: dict[str, dict[str, int]]) -> list[tuple[str, ...]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[tuple[str, ...]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(graph[root]))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(graph[w])))
                    break
                if w in on:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        out.append(tuple(sorted(comp)))
    return out


def side(mod: str) -> str | None:
    """"product" or "lab": the longest entry of PRODUCT or LAB that is `mod` or a package holding
    it (so hacluster.mx is product, hacluster_lab.mx.labrun lab); None when neither names it."""
    best, where = "", None
    for names, name in ((PRODUCT, "product"), (LAB, "lab")):
        for n in names:
            if (mod == n or (n not in ("hacluster", "hacluster_lab") and mod.startswith(n + "."))) and len(n) > len(best):
                best, where = n, name
    return where


GRAPH = imports(modules())


def test_the_walker_sees_function_level_and_relative_imports() -> None:
    """The walker itself: the agent imports the API only inside a function, failsafe's
    `from . import clock` is the module clock, `from .coord.model import Lease` is coord.model, and
    the lab's `from .netns import ...` (in its own distribution) is hacluster_lab.lab.netns."""
    assert "hacluster.http.api" in GRAPH["hacluster.agent.loop"]
    assert "hacluster.clock" in GRAPH["hacluster.failsafe"]
    assert "hacluster_lab.lab.netns" in GRAPH["hacluster_lab.lab.lab"]
    assert "hacluster.coord.model" in GRAPH["hacluster.ha"]
    assert circles({"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1}, "d": {"a": 1}}) == [("a", "b", "c")]


def cycle_path(graph: dict[str, dict[str, int]], comp: tuple[str, ...]) -> str:
    """One circle through comp[0], as `a (line N) -> b (line M) -> a`, for the failure message."""
    start, inside = comp[0], set(comp)
    paths = {start: [start]}
    todo = [start]
    while todo:
        v = todo.pop(0)
        for w in graph[v]:
            if w == start:
                p = paths[v] + [start]
                return " -> ".join(f"{a} (line {graph[a][b]})" for a, b in zip(p, p[1:], strict=False)) + f" -> {start}"
            if w in inside and w not in paths:
                paths[w] = paths[v] + [w]
                todo.append(w)
    return str(comp)


def test_no_import_circles() -> None:
    found = {c: cycle_path(GRAPH, c) for c in circles(GRAPH)}
    unexpected = {c: why for c, why in found.items() if c not in ALLOWED_CIRCLES}
    assert not unexpected, "import circles:\n" + "\n".join(f"  {c}: {why}" for c, why in unexpected.items())
    stale = [c for c in ALLOWED_CIRCLES if c not in found]
    assert not stale, f"allowed circles that no longer exist (remove them from ALLOWED_CIRCLES): {stale}"


def test_every_module_is_product_or_lab() -> None:
    """A new module must be put on one side: the lists are the map a newcomer reads."""
    unplaced = [m for m in GRAPH if side(m) is None]
    assert not unplaced, f"put these in PRODUCT or LAB of {__file__}: {unplaced}"
    assert not set(PRODUCT) & set(LAB)


def test_product_never_imports_the_lab_toolkit() -> None:
    bad = [f"{m} imports {t} (line {line})" for m, edges in GRAPH.items() if side(m) == "product"
           for t, line in edges.items() if side(t) == "lab"]
    assert not bad, "product modules importing the lab toolkit:\n  " + "\n  ".join(bad)


def test_the_pure_core_loads_nothing_that_does_io() -> None:
    """`import hacluster.ha` in a fresh interpreter: no SMTP, sockets, subprocesses, ZooKeeper."""
    code = ("import sys\nimport " + ", ".join(PURE) + "\n"
            f"print(' '.join(m for m in {IO_MODULES!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == [], f"importing {', '.join(PURE)} loads {out}"


def test_each_distribution_holds_only_its_side() -> None:
    """The cut is the directory: every module under hacluster/ is product, every one under
    lab/hacluster_lab/ lab, so uninstalling hacluster-lab removes the toolkit and nothing else."""
    mods = modules()
    wrong = [m for m, (p, _) in mods.items()
             if (side(m) == "lab") != p.is_relative_to(ROOT / "lab" / "hacluster_lab")]
    assert not wrong, f"modules on the wrong side of the cut: {wrong}"
