"""The spec the test bed generates, read by the engine's own loader: production waits
for a second person, staging starts at once (what issue 7's rehearsal relies on), and a
variant that is not about approval can still switch it off for production."""

from __future__ import annotations

from pathlib import Path

import yaml

from deploy.spec import parse_spec
from testbed import paths
from testbed.paths import Host
from testbed.render import spec_text


def test_production_needs_approval_and_staging_does_not() -> None:
    for app in (paths.APP_NAME, paths.LEDGER):
        spec = parse_spec(yaml.safe_load(spec_text([Host(1), Host(2)], app)))
        assert spec.environment("production").approval == "required"
        assert spec.environment("staging").approval == "none"
        assert spec.environment(None).name == "production"


def test_a_top_level_override_sets_the_production_policy(tmp_path: Path) -> None:
    # What `testbed.specs.variant(..., approval="none")` writes: the top-level policy.
    doc = yaml.safe_load(spec_text([Host(1)]))
    doc["approval"] = "none"
    spec = parse_spec(doc, tmp_path / "spec.yml")
    assert spec.environment("production").approval == "none"
    assert spec.environment("staging").approval == "none"
