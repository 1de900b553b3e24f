"""`fence_hacluster_lab`: a fence agent that powers a namespace-lab host off and on, as fence_virsh
does a VM -- written to the standard fence-agent interface, so the node agent drives it exactly
like Debian's fence_ipmilan or fence_virsh (hacluster/fence.py).

Interface (ClusterLabs fence-agents): options as `key=value` lines on stdin, or on the command line
(`-o ACTION`, `-n PLUG`, `--lab-state DIR`); actions `off`, `on`, `reboot`, `status` (exit 0 = on,
2 = off), `list` (one `host,` per line), `monitor` (0 if the lab answers), `metadata` (the XML the
interface's RelaxNG schema validates), `validate-all`. Exit 0 success, 1 failure.

Parameters: `plug` (the lab host; `port` and `nodename` are accepted for it, as the fencing library
does), `lab_state` (the lab's state directory; default $HACLUSTER_LAB_STATE or /run/hacluster-lab).
`off` is the lab's `power-off` fault (the wire cut first, then every process of the host's namespace
SIGKILLed, frozen ones included); `status` says off only when the lab marks the host off *and* no
process runs in its namespace *and* its link is down -- a confirmation, not an echo of the marker.
Lab toolkit: a mail node never runs this.
"""

from __future__ import annotations

import os
import sys
from typing import Callable
from xml.sax.saxutils import quoteattr

EXIT_OK, EXIT_FAIL, EXIT_OFF = 0, 1, 2
ACTIONS = ("on", "off", "reboot", "status", "list", "monitor", "metadata", "validate-all")
ALIASES = {"port": "plug", "nodename": "plug", "option": "action"}
SHORT = {"-o": "action", "-n": "plug"}

PARAMETERS = (
    # name, getopt, type, default, required, shortdesc
    ("action", "-o, --action=[action]", "string", "reboot", "0", "Fencing action"),
    ("plug", "-n, --plug=[host]", "string", None, "1", "Lab host to fence (as in hacluster lab status)"),
    ("port", "-n, --plug=[host]", "string", None, "0", "Lab host to fence (old name of plug)"),
    ("lab_state", "--lab-state=[dir]", "string", "/run/hacluster-lab", "0", "The lab's state directory"),
    ("verbose", "-v, --verbose", "boolean", None, "0", "Verbose mode"),
)


def metadata_xml(agent: str, shortdesc: str, longdesc: str, parameters: tuple, actions: tuple[str, ...]) -> str:
    """An agent's description in the fence-agents metadata format (metadata.rng); `parameters` as
    PARAMETERS: (name, getopt, type, default, required, shortdesc)."""
    params = []
    for name, getopt, typ, default, required, short in parameters:
        dflt = f" default={quoteattr(default)}" if default is not None else ""
        extra = ' deprecated="1"' if name == "port" else ""
        obsoletes = ' obsoletes="port"' if name == "plug" else ""
        params.append(
            f'\t<parameter name="{name}" unique="0" required="{required}"{extra}{obsoletes}>\n'
            f'\t\t<getopt mixed={quoteattr(getopt)} />\n'
            f'\t\t<content type="{typ}"{dflt} />\n'
            f'\t\t<shortdesc lang="en">{short}</shortdesc>\n'
            f'\t</parameter>\n')
    acts = "".join(f'\t<action name="{a}" />\n' for a in actions)
    return ('<?xml version="1.0" ?>\n'
            f'<resource-agent name={quoteattr(agent)} shortdesc={quoteattr(shortdesc)}>\n'
            f'<longdesc>{longdesc}</longdesc>\n'
            '<vendor-url>https://example.org/hacluster</vendor-url>\n'
            f'<parameters>\n{"".join(params)}</parameters>\n<actions>\n{acts}</actions>\n</resource-agent>\n')


def metadata() -> str:
    """The agent's description in the fence-agents metadata format (metadata.rng)."""
    return metadata_xml(
        "fence_hacluster_lab", "Fence agent for hacluster's network-namespace lab",
        "fence_hacluster_lab powers a host of the hacluster network-namespace lab off or on, as "
        "fence_virsh does a virtual machine: off cuts its wire and kills every process in its namespace; "
        "status reports off only when no process runs there and its link is down.",
        PARAMETERS, ACTIONS)


def parse_options(stdin_text: str, argv: list[str]) -> dict[str, str]:
    """Options from stdin (`key=value` lines; `#` comments) then the command line, which wins."""
    opts: dict[str, str] = {}
    for line in stdin_text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        k, _, v = line.partition("=")
        k = ALIASES.get(k.strip(), k.strip())
        opts[k] = v.strip()
    it = iter(argv)
    for arg in it:
        if arg in SHORT:
            opts[SHORT[arg]] = next(it, "")
        elif arg.startswith("--") and "=" in arg:
            k, _, v = arg[2:].partition("=")
            k = k.replace("-", "_")
            opts[ALIASES.get(k, k)] = v
        elif arg in ("-v", "--verbose"):
            opts["verbose"] = "1"
        elif arg.startswith("--"):
            k = arg[2:].replace("-", "_")
            opts[ALIASES.get(k, k)] = next(it, "")
        else:
            raise ValueError(f"unexpected argument {arg!r}")
    return opts


def host_power(lab: object, host: str) -> bool:
    """True if the host is on: not marked off, or any process in its namespace, or its link up."""
    from .netns import pids_in

    ns = lab.ns(host)  # type: ignore[attr-defined]
    marked_off = host in lab.powered_off()  # type: ignore[attr-defined]
    return not marked_off or bool(pids_in(ns)) or _link_up(lab, host)


def _link_up(lab: object, host: str) -> bool:
    """The host's interface has the UP flag (`ip -o link`: `<BROADCAST,MULTICAST,UP,LOWER_UP>`)."""
    import subprocess

    h = lab.plan.host(host)  # type: ignore[attr-defined]
    out = subprocess.run(["ip", "-n", lab.ns(host), "-o", "link", "show", "dev", h.interface],  # type: ignore[attr-defined]
                         capture_output=True, text=True, timeout=10)
    flags = out.stdout.partition("<")[2].partition(">")[0].split(",")
    return out.returncode != 0 or "UP" in flags  # unreadable: not confirmed off


def answered_first(action: str, say: Callable[[str], None], metadata: Callable[[], str],
                   actions: tuple[str, ...] = ACTIONS) -> int | None:
    """What every lab agent answers before it touches anything: `metadata` (its XML), an unknown
    action (a failure naming the known ones); None to go on."""
    if action == "metadata":
        say(metadata())
        return EXIT_OK
    if action not in actions:
        say(f"Failed: unknown action {action!r} (known: {', '.join(actions)})")
        return EXIT_FAIL
    return None


def run(opts: dict[str, str], say: Callable[[str], None]) -> int:
    action = opts.get("action", "reboot")
    if (rc := answered_first(action, say, metadata)) is not None:
        return rc
    from .lab import Lab
    from .netns import LabError
    from .state import DEFAULT_STATE_DIR

    try:
        lab = Lab.attach(opts.get("lab_state") or DEFAULT_STATE_DIR)
    except LabError as err:
        say(f"Failed: {err}")
        return EXIT_FAIL
    if action == "monitor":
        say("Success: the lab answers")
        return EXIT_OK
    if action == "list":
        for h in lab.plan.hosts:
            say(f"{h.name},")
        return EXIT_OK
    host = opts.get("plug", "")
    try:
        lab.ns(host)
    except Exception:
        say(f"Failed: plug {host!r} is not a host of this lab")
        return EXIT_FAIL
    if action == "validate-all":
        return EXIT_OK
    try:
        if action == "status":
            on = host_power(lab, host)
            say(f"Status: {'ON' if on else 'OFF'}")
            return EXIT_OK if on else EXIT_OFF
        if action in ("off", "reboot"):
            if host not in lab.powered_off() or host_power(lab, host):
                lab.fault(host, "power-off")
            if host_power(lab, host):
                say("Failed: still powered on after power-off")
                return EXIT_FAIL
            if action == "off":
                say("Success: Powered OFF")
                return EXIT_OK
        if action in ("on", "reboot"):
            lab.fault(host, "power-on")
            say("Success: Powered ON")
            return EXIT_OK
    except LabError as err:
        say(f"Failed: {err}")
        return EXIT_FAIL
    return EXIT_FAIL


def agent_main(argv: list[str] | None, act: Callable[[dict[str, str], Callable[[str], None]], int],
               needs_root: str) -> int:
    """The fence-agent command line both lab agents share: options from argv or key=value lines on
    stdin, root required for anything but metadata (`needs_root` says why), then `act`."""
    argv = sys.argv[1:] if argv is None else argv
    text = "" if argv or sys.stdin.isatty() else sys.stdin.read()
    try:
        opts = parse_options(text, argv)
    except ValueError as err:
        print(f"Failed: {err}", file=sys.stderr)
        return EXIT_FAIL
    if os.geteuid() != 0 and opts.get("action") not in ("metadata", None):
        print(f"Failed: {needs_root}", file=sys.stderr)
        return EXIT_FAIL
    return act(opts, lambda s: print(s, flush=True))


def main(argv: list[str] | None = None) -> int:
    return agent_main(argv, run, "fence_hacluster_lab needs root (it acts on the lab's namespaces)")


if __name__ == "__main__":
    sys.exit(main())
