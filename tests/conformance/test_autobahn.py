"""The Autobahn TestSuite subset against `livechat echo`: no case may FAIL."""

from pathlib import Path

from tests.conformance.autobahn import SUBSET, run


def test_autobahn_subset_has_no_failed_case(tmp_path: Path) -> None:
    summary = run(SUBSET, tmp_path / "reports")
    assert summary.total > 250, summary.markdown()
    assert summary.failed == [], summary.markdown()
