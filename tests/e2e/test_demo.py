"""`trailhouse demo`, the README's first command: generated logs in a local S3 bucket, every stage on the embedded
stack, each source's status, and a search."""

import re

import pytest

from tests.e2e.cli import Trailhouse

pytestmark = pytest.mark.e2e


def test_the_demo_makes_every_generated_record_searchable_and_says_so(tmp_path):
    events, regions = 1_500, ("us-east-1", "eu-west-1")
    demo = Trailhouse(tmp_path, {"TRAILHOUSE_HTTP_PORT": "0"})  # no fixed ports: other tests run beside it
    out = demo("demo", "--events", str(events), "--accounts", "2", "--regions", ",".join(regions), timeout=300).stdout

    assert f"{events:,} record(s) ingested and searchable" in out
    status = [line.split() for line in out.splitlines() if line.startswith("cloudtrail-")]
    sources = {(row[1], row[2]): (row[3], int(row[4].replace(",", ""))) for row in status}
    assert len(sources) == 4 and {state for state, _ in sources.values()} == {"ONLINE"}
    assert sum(n for _, n in sources.values()) == events

    [first] = re.findall(r"trailhouse search '\*(\d{12})\*' --count\n(\d+)", out)
    account, found = first[0], int(first[1])
    assert found == sum(n for (acct, _), (_, n) in sources.items() if acct == account) > 0
    listed = out.split(f"trailhouse search '*{account}*' --limit 10\n")[1].splitlines()[1:11]
    assert len(listed) == 10 and all(line.split()[2] == account for line in listed)
