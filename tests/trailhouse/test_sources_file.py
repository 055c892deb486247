"""`trailhouse sources apply FILE`: reading the file (validated, with the entry named) and planning the difference."""

from datetime import UTC, datetime

import pytest

from trailhouse.errors import InvalidSource
from trailhouse.sources import new_source
from trailhouse.sources_file import plan, read_sources_file

THEN = datetime(2026, 1, 1, tzinfo=UTC)
NOW = datetime(2026, 11, 24, tzinfo=UTC)
ROLE = "arn:aws:iam::999988887777:role/trailhouse"


def _file(tmp_path, text: str):
    path = tmp_path / "sources.toml"
    path.write_text(text)
    return path


def test_a_file_of_sources_is_read_like_sources_add(tmp_path):
    path = _file(
        tmp_path,
        f"""
[[sources]]
account = "1234-5678-9012"
region = "US-East-1"
bucket = "s3://org-trail"
org_id = "o-a1b2c3d4e5"
prefix = "trails/"
role_arn = "{ROLE}"
external_id = "shared-secret"

[[sources]]
account = "111122223333"
region = "eu-west-1"
bucket = "s3://org-trail"
profile = "audit"
""",
    )
    first, second = read_sources_file(path, NOW)
    assert first == new_source(
        "123456789012", "us-east-1", "s3://org-trail", "trails", "o-a1b2c3d4e5", NOW, role_arn=ROLE,
        external_id="shared-secret",
    )  # fmt: skip
    assert (second.source_id, second.profile, second.credentials) == (
        "cloudtrail-111122223333-eu-west-1",
        "audit",
        "profile audit",
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[sources]]\naccount = '123456789012'\nregion = 'us-east-1'\n", "source #1: bucket missing"),
        (
            "[[sources]]\naccount = '123456789012'\nregion = 'us-east-1'\nbucket = 's3://b-1'\nbuckte = 'x'\n",
            "source #1: unknown key(s) buckte",
        ),
        (
            "[[sources]]\naccount = '123456789012'\nregion = 'us-east-1'\nbucket = 's3://b-1'\n"
            "[[sources]]\naccount = '1234-5678-9012'\nregion = 'us-east-1'\nbucket = 's3://b-2'\n",
            "source #2: cloudtrail-123456789012-us-east-1 is listed twice",
        ),
        ("[[sources]]\naccount = '12345'\nregion = 'us-east-1'\nbucket = 's3://b-1'\n", "source #1: account"),
        (
            "[[sources]]\naccount = '123456789012'\nregion = 'us-east-1'\nbucket = 's3://b-1'\nexternal_id = 'xx'\n",
            "role",
        ),
        ("sources = 'all'\n", "write each source as a [[sources]] table"),
        ("[sources\n", "is not valid TOML"),
        ("[[source]]\naccount = '123456789012'\n", "unknown key(s) source"),
    ],
)
def test_a_bad_file_is_refused_naming_the_entry_and_the_fix(tmp_path, text, message):
    with pytest.raises(InvalidSource, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        read_sources_file(_file(tmp_path, text), NOW)


def test_a_missing_file_says_so(tmp_path):
    with pytest.raises(InvalidSource, match="no such file"):
        read_sources_file(tmp_path / "nowhere.toml", NOW)


def test_the_plan_adds_updates_and_removes_and_an_update_keeps_the_creation_time():
    kept = new_source("111111111111", "us-east-1", "s3://trail", now=THEN)
    moved = new_source("222222222222", "us-east-1", "s3://old-trail", now=THEN)
    gone = new_source("333333333333", "us-east-1", "s3://trail", now=THEN)
    current = [kept, moved, gone]
    desired = [
        new_source("111111111111", "us-east-1", "s3://trail", now=NOW),
        new_source("222222222222", "us-east-1", "s3://new-trail", "logs", now=NOW, role_arn=ROLE),
        new_source("444444444444", "eu-west-1", "s3://trail", org_id="o-a1b2c3d4e5", now=NOW),
    ]
    changes = plan(current, desired)

    assert [c.describe() for c in changes.changes] == [
        f"~ cloudtrail-222222222222-us-east-1  bucket s3://old-trail -> s3://new-trail; prefix - -> logs; "
        f"role_arn - -> {ROLE}",
        "- cloudtrail-333333333333-us-east-1",
        "+ cloudtrail-444444444444-eu-west-1  s3://trail (org_id o-a1b2c3d4e5)",
    ]
    assert changes.summary() == "1 to add, 1 to update, 1 to remove, 1 unchanged"
    writes = changes.writes
    assert writes[gone.source_id] is None
    assert writes[moved.source_id].created_at == THEN and writes[moved.source_id].bucket == "s3://new-trail"
    assert kept.source_id not in writes


def test_applying_the_same_file_twice_changes_nothing():
    sources = [new_source("111111111111", "us-east-1", "s3://trail", now=THEN)]
    again = plan(sources, [new_source("111111111111", "us-east-1", "s3://trail", now=NOW)])
    assert (again.changes, again.summary()) == ([], "0 to add, 0 to update, 0 to remove, 1 unchanged")
