"""The bench's trail at N and 4N: the same rate over 4x the span, so its files do not grow with N; the span is
positive."""

from datetime import timedelta

import pytest

from trailhouse.bench_pipeline import BenchSpec, trail_at
from trailhouse.cli import main
from trailhouse.generate import generate_files


def _files(spec: BenchSpec, events: int) -> list[int]:
    return [f.records for f in generate_files(trail_at(spec, events))]


def test_4n_spreads_over_4x_the_span_with_files_of_the_same_size():
    spec = BenchSpec(events=3000, span=timedelta(hours=6), scale=True)
    at_n, at_4n = _files(spec, 3000), _files(spec, 12000)

    assert trail_at(spec, 12000).span == timedelta(hours=24)
    assert sum(at_n) == 3000 and sum(at_4n) == 12000
    assert 3.5 < len(at_4n) / len(at_n) < 4.5
    assert abs(12000 / len(at_4n) - 3000 / len(at_n)) < 0.15 * 3000 / len(at_n)


def test_the_trail_at_n_is_the_spec_as_given():
    spec = BenchSpec(events=500, accounts=2, seed=3, regions=("eu-west-1", "us-east-1"), span=timedelta(hours=2))
    trail = trail_at(spec, 500)

    assert (trail.events, trail.accounts, trail.seed, trail.regions, trail.span) == (
        500,
        2,
        3,
        ("eu-west-1", "us-east-1"),
        timedelta(hours=2),
    )


@pytest.mark.parametrize("verb", [["bench", "pipeline"], ["generate", "out"]])
@pytest.mark.parametrize("hours", ["0", "-1", "nan"])
def test_span_hours_must_be_positive(verb, hours, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([*verb, "--span-hours", hours])
    assert exit_.value.code == 2
    assert f"--span-hours: {hours} is not a positive number" in capsys.readouterr().err
