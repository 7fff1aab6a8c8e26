"""The Autobahn TestSuite subset against `livechat echo`: no case may FAIL."""

from pathlib import Path

from tests.conformance.autobahn import SUBSET, run


def test_autobahn_subset_has_no_failed_case(tmp_path: Path) -> None:
    summary = run(SUBSET, tmp_path / "reports")
    # The subset is 196 cases; fewer means kosoku skipped some (e.g. a case file failed to load).
    assert summary.total >= 196, summary.markdown()
    assert summary.failed == [], summary.markdown()
