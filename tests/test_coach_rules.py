"""Rule packs: the shipped pack loads; broken packs are refused with file, line and problem."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from coach.rules import CATEGORIES, DEFAULT_PACK, RulePackError, load_rules

pytestmark = pytest.mark.unit

GOOD = """\
pack: test
version: 2
lang: en
rules:
  - id: t.promise
    category: false_promise
    message: Don't promise.
    match:
      phrases: [i promise]
"""


def write(tmp_path: Path, text: str, name: str = "rules.yaml") -> Path:
    (tmp_path / name).write_text(text, encoding="utf-8")
    return tmp_path


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(RulePackError) as err:
        load_rules(write(tmp_path, text))
    return err.value.problems


def test_default_pack_covers_every_category_and_both_languages() -> None:
    rules = load_rules(DEFAULT_PACK)
    for lang in ("en", "zh"):
        cats = {r.category for r in rules.for_lang(lang).rules}
        assert cats >= set(CATEGORIES) - {"missing_disclosure"}, (lang, set(CATEGORIES) - cats)
        steps = {s.step for s in rules.for_lang(lang).disclosures}
        assert steps == {"recording_notice", "identity_verification", "risk_disclosure", "closing_check"}
    assert all(v >= 1 for v in rules.versions.values())


def test_good_pack_loads(tmp_path: Path) -> None:
    rules = load_rules(write(tmp_path, GOOD))
    assert [r.id for r in rules.rules] == ["t.promise"]
    assert rules.rules[0].severity == "serious"  # the category's default
    assert rules.versions == {"rules.yaml": 2}


def test_bad_indentation_names_the_line(tmp_path: Path) -> None:
    text = GOOD.replace("    message: Don't promise.", "  message: Don't promise.\n      oops: [")
    found = problems(tmp_path, text)
    assert len(found) == 1
    assert found[0].startswith("rules.yaml:")
    assert "YAML syntax error" in found[0]


def test_unknown_category_and_field(tmp_path: Path) -> None:
    text = GOOD.replace("category: false_promise", "category: rudeness\n    colour: red")
    found = problems(tmp_path, text)
    assert any("rules.yaml:6" in p and "unknown category 'rudeness'" in p for p in found), found
    assert any("unknown field 'colour'" in p for p in found), found


def test_bad_regex_is_reported_with_its_line(tmp_path: Path) -> None:
    text = GOOD.replace(
        "      phrases: [i promise]", "      phrases: [i promise]\n      regex: ['(unclosed']"
    )
    found = problems(tmp_path, text)
    assert len(found) == 1
    assert found[0].startswith("rules.yaml:10:")
    assert "not a valid regular expression" in found[0]


def test_every_problem_is_listed_and_ids_are_unique(tmp_path: Path) -> None:
    write(tmp_path, GOOD, "a.yaml")
    bad = GOOD.replace("version: 2", "version: two").replace("severity", "x")
    bad += "  - id: t.other\n    category: abuse\n    match: {}\n"
    found = problems(tmp_path, bad)  # writes rules.yaml next to a.yaml: t.promise is a duplicate
    text = "\n".join(found)
    assert "'version' must be a positive integer" in text
    assert "duplicate id 't.promise' (first at a.yaml:" in text
    assert "rule t.other needs 'message'" in text
    assert "match needs phrases, regex, exemplars, judge, timing or pii" in text


def test_dead_air_rule_needs_timing(tmp_path: Path) -> None:
    text = GOOD.replace("category: false_promise", "category: dead_air")
    assert any("needs match.timing.silence_s" in p for p in problems(tmp_path, text))


def test_rules_check_cli(tmp_path: Path) -> None:
    exe = [sys.executable, "-m", "sidecar.cli", "rules", "check"]
    ok = subprocess.run([*exe, str(DEFAULT_PACK)], capture_output=True, text=True, check=False)
    assert ok.returncode == 0, ok.stderr
    assert "rules" in ok.stdout
    shutil.copy(DEFAULT_PACK / "violations.en.yaml", tmp_path / "v.yaml")
    (tmp_path / "broken.yaml").write_text(GOOD.replace("false_promise", "nonsense"), encoding="utf-8")
    bad = subprocess.run([*exe, str(tmp_path)], capture_output=True, text=True, check=False)
    assert bad.returncode == 4
    assert "broken.yaml:6: rule t.promise: unknown category 'nonsense'" in bad.stderr
