"""`trailhouse insights` and `trailhouse bench insights` as a user runs them."""

import json

import pytest

from tests.e2e.cli import Trailhouse

pytestmark = pytest.mark.e2e


def test_insights_on_a_new_store_says_there_are_none_and_a_bad_since_says_what_is_wanted(tmp_path):
    trailhouse = Trailhouse(tmp_path / "data", {})
    assert trailhouse("insights", "--since", "1d").stdout.strip() == "no insights"
    bad = trailhouse("insights", "--since", "yesterday-ish", ok=False)
    assert bad.returncode == 2 and "30m, 24h, 7d" in bad.stderr, bad.stderr


def test_bench_insights_prints_and_writes_its_figures(tmp_path):
    figures = tmp_path / "insights.json"
    out = Trailhouse(tmp_path / "data", {})(
        "bench", "insights", "--sources", "1", "--days", "8", "--json", str(figures)
    )
    assert "precision" in out.stdout and "recall burst" in out.stdout
    report = json.loads(figures.read_text())
    assert report["sources"] == 1 and report["days"] == 8 and report["sensitivity"]["min_volume"] == 10
