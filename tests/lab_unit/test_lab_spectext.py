"""The embedded lab spec's health section and the helpers around it: merging a test's or drill's
checks over it (a check of the same type replaces the lab's, others are added, comments kept),
`with_spool` dropping the checks that assume an MTA and a Maildir on every store, and the
simulated mdstat path (written only inside the node's own state directory)."""

from __future__ import annotations

from pathlib import Path

from hacluster_lab.drill.labtarget import drill_spec_text
from hacluster_lab.lab import mdstat_sim
from hacluster_lab.lab.postfix import with_spool
from hacluster_lab.lab.spectext import merge_health
from hacluster.spec import default_spec_text, parse_spec


def checks(text: str) -> dict[str, list[tuple[str, dict]]]:
    spec = parse_spec(text, "t.yml")
    return {tier: [(c.check, dict(c.params)) for c in cs] for tier, cs in spec.health.items()}


def test_the_embedded_spec_checks_every_mta_queue_the_store_spool_and_a_simulated_raid() -> None:
    got = checks(default_spec_text())
    assert list(got) == ["fallback", "relay", "store"]  # the FallbackMX's queue first
    assert [c for c, _ in got["fallback"]] == ["queue"] and [c for c, _ in got["relay"]] == ["queue"]
    assert [c for c, _ in got["store"]] == ["queue", "spool", "raid"]
    assert dict(got["store"])["raid"] == {"mdstat": "{state_dir}/mdstat", "simulated": True}


def test_merge_replaces_a_check_of_the_same_type_and_appends_the_rest() -> None:
    text = merge_health(default_spec_text(), """
health:
  store:
    - {check: raid, mdstat: "{state_dir}/other", interval_s: 0.3}
    - {check: mta, scope: holder, config_dir: "{state_dir}/postfix"}
  relay:
    - {check: smtp, host: 127.0.0.1}
""")
    got = checks(text)
    assert [c for c, _ in got["store"]] == ["queue", "spool", "raid", "mta"]
    assert dict(got["store"])["raid"] == {"mdstat": "{state_dir}/other"}  # replaced whole: not simulated
    assert [c for c, _ in got["relay"]] == ["queue", "smtp"]
    assert "# the FallbackMX's queue first" in text  # the spec's comments survive


def test_replace_drops_the_spec_s_own_checks() -> None:
    text = merge_health(default_spec_text(), "health:\n  store:\n    - {check: raid}\n", replace=True)
    assert checks(text) == {"store": [("raid", {})]}


def test_drill_spec_merges_its_store_checks() -> None:
    got = checks(drill_spec_text())
    store = dict(got["store"])
    assert store["spool"]["warn_free_pct"] == 5 and "simulated" not in store["raid"]


def test_with_spool_drops_the_checks_that_assume_an_mta_on_every_store() -> None:
    assert [c for c, _ in checks(with_spool(default_spec_text(), "mirrored"))["store"]] == ["spool", "raid"]
    assert [c for c, _ in checks(with_spool(default_spec_text(), "shared"))["store"]] == ["raid"]
    assert [c for c, _ in checks(with_spool(default_spec_text(), "shared"))["fallback"]] == ["queue"]


def test_simulated_mdstat_path_stays_inside_the_state_dir(tmp_path: Path) -> None:
    spec = parse_spec(default_spec_text(), "t.yml")
    assert mdstat_sim.simulated_path(spec, "store1", tmp_path) == (tmp_path / "mdstat").resolve()
    assert mdstat_sim.simulated_path(spec, "relay1", tmp_path) is None  # no raid check on relays
    assert mdstat_sim.simulated_path(spec, "dns", tmp_path) is None  # not a node of the spec
    for where in ("/proc/mdstat", "{state_dir}/../mdstat", "{state_dir}"):
        other = parse_spec(default_spec_text().replace('mdstat: "{state_dir}/mdstat"', f'mdstat: "{where}"'), "t.yml")
        assert mdstat_sim.simulated_path(other, "store1", tmp_path) is None, where
    unmarked = parse_spec(default_spec_text().replace("simulated: true, ", ""), "t.yml")
    assert mdstat_sim.simulated_path(unmarked, "store1", tmp_path) is None  # only a check marked simulated


def test_the_samples_parse_as_healthy_and_degraded(tmp_path: Path) -> None:
    from hacluster.health.raid import RaidCheck

    path = tmp_path / "mdstat"
    mdstat_sim.write(path, mdstat_sim.HEALTHY)
    ok = RaidCheck(str(path), simulated=True)(1.0)
    assert (ok.severity, ok.detail, ok.data["simulated"]) == ("ok", "md0 clean, md1 clean", True)
    mdstat_sim.write(path, mdstat_sim.FAULT_SAMPLES["raid-degraded"])
    bad = RaidCheck(str(path))(1.0)
    assert (bad.severity, bad.detail, bad.data["simulated"]) == ("warn", "md0 clean, md1 degraded", False)
    fixture = Path(__file__).resolve().parents[1] / "fixtures" / "mdstat" / "raid1-degraded-faulty.mdstat"
    assert mdstat_sim.DEGRADED == fixture.read_text()  # the real sample, not an invented one
