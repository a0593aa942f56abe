"""Rules as data: validation, actions by type, the starter set, the reloadable rule source."""

from __future__ import annotations

import os

import pytest
from pydantic import ValidationError

from payments_core.rules import Rule, RuleSet, RuleSource, parse_action, starter_rule_set, write_ruleset


def _rule(**kw):
    base = dict(id="T1", name="test", type="risk", condition="fraud_score > 0.5", action="decline")
    base.update(kw)
    return Rule(**base)


def test_starter_rule_set_is_valid_and_versioned():
    rs = starter_rule_set()
    assert len(rs.rules) >= 10
    assert {r.type for r in rs.rules} == {"authentication", "risk", "retry", "routing"}
    assert any(r.shadow for r in rs.rules)
    assert rs.full_version.startswith("starter-1+")
    assert [r.priority for r in rs.ordered()] == sorted(r.priority for r in rs.rules)


def test_invalid_condition_is_refused_with_position():
    with pytest.raises(ValidationError) as err:
        _rule(condition="fraud_score >= AND is_retry")
    assert "line 1, column 16" in str(err.value)


@pytest.mark.parametrize(
    "rtype, action, ok",
    [
        ("risk", "decline", True),
        ("authentication", "challenge_3ds", True),
        ("risk", "approve", True),
        ("routing", "route:network_token", True),
        ("retry", "retry:3600", True),
        ("retry", "no_retry", True),
        ("routing", "decline", False),
        ("risk", "route:passkey", False),
        ("routing", "route:carrier_pigeon", False),
        ("retry", "retry:soon", False),
        ("risk", "block", False),
    ],
)
def test_actions_fit_rule_types(rtype, action, ok):
    if ok:
        assert _rule(type=rtype, action=action).action == action
    else:
        with pytest.raises(ValidationError):
            _rule(type=rtype, action=action)


def test_parse_action():
    assert parse_action("retry:30").value == 30 and parse_action("no_retry").value is None
    assert parse_action("route:3ds").kind == "route"


def test_duplicate_ids_refused_and_version_tracks_content():
    with pytest.raises(ValidationError):
        RuleSet(version="x", rules=[_rule(), _rule()])
    a = RuleSet(version="v1", rules=[_rule()])
    b = RuleSet(version="v1", rules=[_rule(condition="fraud_score > 0.6")])
    assert a.full_version != b.full_version
    assert a.full_version == RuleSet(version="v1", rules=[_rule(updated_by="someone else")]).full_version


def test_rule_source_reloads_when_the_file_changes(tmp_path):
    path = tmp_path / "rules" / "ruleset.json"
    src = RuleSource(path)
    assert src.current().version == "starter-1"  # no file yet: starter set
    first = RuleSet(version="cp-1", rules=[_rule()])
    write_ruleset(first, path)
    assert src.current().full_version == first.full_version
    same = src.current()
    assert src.current() is same  # unchanged file: no re-read
    second = RuleSet(version="cp-2", rules=[_rule(), _rule(id="T2", condition="is_retry")])
    write_ruleset(second, path)
    os.utime(path, ns=(1, 1))  # make sure the stamp differs even on coarse clocks
    assert src.current().full_version == second.full_version
    path.write_text('{"version": "broken", "rules": [{"id": "X"}]}')
    assert src.current().full_version == second.full_version  # invalid file ignored
    assert src.last_error and "broken" not in src.current().version
    path.unlink()
    assert src.current().version == "starter-1"
