"""docs/config-reference.md and docs/cluster.schema.json are generated from the validator
(hacluster/spec_reference.py): they must be current, describe every key the validator accepts
(and none it does not), and the schema must accept what `config check` accepts and refuse the
unknown keys it refuses."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import jsonschema_rs
import pytest
from ruamel.yaml import YAML

from hacluster import spec as spec_mod
from hacluster import spec_reference as ref

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = [ROOT / "hacluster" / "examples" / "lab.yml", ROOT / "vagrant" / "cluster.yml"]


def test_generated_files_are_current() -> None:
    stale = [str(p) for p, text in ref.outputs(ROOT).items() if not p.exists() or p.read_text() != text]
    assert not stale, f"stale: {stale}: run `python -m hacluster.spec_reference`"


def test_every_key_the_validator_accepts_is_described_and_nothing_else() -> None:
    keys = ref.discover()
    assert not [p for p in keys if not ref.DOCS.get(p)], "keys without a description in spec_reference.DOCS"
    assert not [p for p in ref.DOCS if p not in keys], "DOCS describes keys the validator does not accept"


def test_discovery_follows_the_validator(monkeypatch: pytest.MonkeyPatch) -> None:
    """A parameter added to the validator shows up, undescribed -- so the test above fails."""
    monkeypatch.setitem(spec_mod.RESOURCE_PARAMS, "vip", spec_mod.RESOURCE_PARAMS["vip"] | {"new_knob"})
    keys = ref.discover()
    assert "roles.<role>.resources[type=vip].new_knob" in keys
    assert "roles.<role>.resources[type=vip].new_knob" not in ref.DOCS


def test_types_and_defaults_come_from_the_validator() -> None:
    keys = ref.discover()
    assert keys["zookeeper.session_timeout_s"].types == ("number",) and keys["zookeeper.session_timeout_s"].default == 4.0
    assert keys["cluster"].required and keys["nodes[].priority"].default == 100
    assert keys["timing.lease_s"].default == 2.05  # the default profile's
    assert keys["timing.stall_s"].default == 0.5 and keys["timing.stall_s"].types == ("number",)


@pytest.fixture(scope="module")
def validator() -> object:
    return jsonschema_rs.validator_for(json.loads((ROOT / "docs" / "cluster.schema.json").read_text()))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_the_schema_accepts_every_example(validator: object, path: Path) -> None:
    spec_mod.load_spec(path)  # valid for config check
    doc = YAML(typ="safe").load(path.read_text())
    assert [e.message for e in validator.iter_errors(doc)] == []  # type: ignore[attr-defined]


@pytest.mark.parametrize("where", [
    ("zookeeper", "hostz"), ("timing", "lease"), ("api", "tls"), ("", "clustr"),
    ("nodes.0", "prio"), ("roles.store.resources.1", "garp_cnt"), ("roles.store", "vips"),
])
def test_the_schema_refuses_what_config_check_refuses(validator: object, where: tuple[str, str]) -> None:
    doc = YAML(typ="safe").load(spec_mod.default_spec_text())
    bad = copy.deepcopy(doc)
    node = bad
    for part in filter(None, where[0].split(".")):
        node = node[int(part)] if part.isdigit() else node[part]
    node[where[1]] = 1
    assert list(validator.iter_errors(bad)), where  # type: ignore[attr-defined]
    text = json.dumps(bad)  # JSON is YAML: config check reads it the same way
    with pytest.raises(spec_mod.SpecError, match="unknown key"):
        spec_mod.parse_spec(text, "bad.yml")
