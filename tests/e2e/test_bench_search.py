"""`trailhouse bench search` end to end, small: it runs, reports figures for every design, and agrees on answers."""

import json

import pytest

from tests.e2e.cli import Trailhouse

pytestmark = pytest.mark.e2e


def test_bench_search_reports_figures_and_json(tmp_path):
    trailhouse = Trailhouse(tmp_path / "data", {})
    out = tmp_path / "bench.json"
    args = (
        "bench",
        "search",
        "--events",
        "3000",
        "--repeat",
        "2",
        "--designs",
        "scan,numbers,lookup",
        "--json",
        str(out),
    )
    result = trailhouse(*args, "--sink-batch-events", "1000")

    assert "every design found the same events" in result.stdout
    assert "goal hit-busy" in result.stdout and "goal ingest" in result.stdout
    report = json.loads(out.read_text())
    assert report["events"] == 3000 and [d["name"] for d in report["designs"]] == ["scan", "numbers", "lookup"]
    assert {(q["design"], q["case"], q["kind"]) for q in report["queries"]} == {
        (design, case, kind)
        for design in ("scan", "numbers", "lookup")
        for case in ("hit-busy", "hit-rare", "miss")
        for kind in ("search", "json", "count")
    }
    assert all(len(q["runs_ms"]) == 2 and q["p50_ms"] > 0 for q in report["queries"])
    assert not report["stage_reused"]

    trailhouse(*args, "--sink-batch-events", "1000")
    assert json.loads(out.read_text())["stage_reused"], "the generated events are staged once"
