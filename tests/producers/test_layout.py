from datetime import UTC, datetime

import pytest

from producers.layout import FileKind, account_prefix, parse_key, region_prefix


def test_regular_trail_key_is_parsed():
    key = (
        "AWSLogs/218007301253/CloudTrail/us-east-1/2023/07/10/"
        "218007301253_CloudTrail_us-east-1_20230710T1145Z_7xgocspSowgK0Gto.json.gz"
    )
    parsed = parse_key(key)
    assert parsed is not None
    assert (parsed.prefix, parsed.org_id, parsed.account, parsed.region) == ("", None, "218007301253", "us-east-1")
    assert parsed.kind is FileKind.LOGS
    assert parsed.delivered == datetime(2023, 7, 10, 11, 45, tzinfo=UTC)


def test_organization_trail_with_prefix_is_parsed():
    key = (
        "team/logs/AWSLogs/o-a1b2c3d4e5/111122223333/CloudTrail/eu-west-2/2026/01/31/"
        "111122223333_CloudTrail_eu-west-2_20260131T2355Z_abcdefABCDEF0123.json.gz"
    )
    parsed = parse_key(key)
    assert parsed is not None
    assert (parsed.prefix, parsed.org_id, parsed.account, parsed.region) == (
        "team/logs",
        "o-a1b2c3d4e5",
        "111122223333",
        "eu-west-2",
    )


def test_digest_and_insight_files_are_told_apart():
    digest = parse_key(
        "AWSLogs/111122223333/CloudTrail-Digest/us-east-1/2026/01/31/"
        "111122223333_CloudTrail-Digest_us-east-1_trail_us-east-1_20260131T000000Z.json.gz"
    )
    insight = parse_key(
        "AWSLogs/111122223333/CloudTrail-Insight/us-east-1/2026/01/31/"
        "111122223333_CloudTrail-Insight_us-east-1_20260131T0000Z_abc.json.gz"
    )
    assert digest is not None and digest.kind is FileKind.DIGEST
    assert digest.delivered == datetime(2026, 1, 31, tzinfo=UTC)
    assert insight is not None and insight.kind is FileKind.INSIGHT


@pytest.mark.parametrize(
    "key",
    [
        "AWSLogs/111122223333/CloudTrail/us-east-1/",
        "AWSLogs/1111222233/CloudTrail/us-east-1/2026/01/31/x.json.gz",
        "AWSLogs/111122223333/Config/us-east-1/2026/01/31/x.json.gz",
        "README.txt",
        "AWSLogs/111122223333/CloudTrail/us-east-1/2026/01/31/x.txt",
    ],
)
def test_other_objects_are_not_log_files(key):
    assert parse_key(key) is None


def test_prefixes_of_a_source_round_trip_through_the_parser():
    prefix = region_prefix("111122223333", "us-east-1", prefix="p/q", org_id="o-a1b2c3d4e5")
    assert prefix == "p/q/AWSLogs/o-a1b2c3d4e5/111122223333/CloudTrail/us-east-1/"
    parsed = parse_key(prefix + "2026/01/31/111122223333_CloudTrail_us-east-1_20260131T0000Z_x.json.gz")
    assert parsed is not None and parsed.prefix == "p/q" and parsed.org_id == "o-a1b2c3d4e5"
    assert account_prefix("111122223333") == "AWSLogs/111122223333/"


def test_a_start_key_sorts_between_the_minutes_of_a_lane():
    from producers.layout import delivered_at, file_name, key_at

    lane = region_prefix("111122223333", "eu-west-1", prefix="p", org_id="o-a1b2c3d4e5")
    at = datetime(2026, 1, 31, 23, 55, tzinfo=UTC)
    start = key_at(lane, at)
    name = "111122223333_CloudTrail_eu-west-1_{}_x.json.gz"
    before = f"{lane}2026/01/31/" + name.format("20260131T2350Z")
    same = f"{lane}2026/01/31/" + name.format("20260131T2355Z")
    next_day = f"{lane}2026/02/01/" + name.format("20260201T0000Z")
    assert before < start < same < next_day
    assert f"{lane}2026/01/30/" + name.format("20260130T2359Z") < start
    assert delivered_at(same) == at and file_name(same) == name.format("20260131T2355Z")
    insight_lane = region_prefix("111122223333", "eu-west-1", kind=FileKind.INSIGHT)
    insight = f"{insight_lane}2026/01/31/111122223333_CloudTrail-Insight_eu-west-1_20260131T2355Z_y.json.gz"
    assert key_at(insight_lane, at) < insight
