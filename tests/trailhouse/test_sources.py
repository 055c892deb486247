import pytest

from trailhouse.errors import InvalidSource
from trailhouse.sources import Source, new_source, normalize_account, normalize_bucket, validate_region


@pytest.mark.parametrize("text", ["1234-5678-9012", "1234 5678 9012", " 123456789012 ", "1234-5678 9012"])
def test_account_numbers_lose_dashes_and_spaces(text):
    assert normalize_account(text) == "123456789012"


@pytest.mark.parametrize("text", ["12345678901", "1234567890123", "12345678901a", "", "one"])
def test_anything_but_twelve_digits_is_rejected_with_the_rule(text):
    with pytest.raises(InvalidSource, match="exactly 12 digits"):
        normalize_account(text)


def test_regions_are_checked_against_aws_and_the_nearest_are_suggested():
    assert validate_region("US-East-1") == "us-east-1"
    assert validate_region("eusc-de-east-1") == "eusc-de-east-1"
    with pytest.raises(InvalidSource, match="did you mean us-east-1"):
        validate_region("us-eats-1")
    with pytest.raises(InvalidSource, match="not an AWS region"):
        validate_region("mars-north-1")


def test_buckets_are_normalized_and_misuse_is_explained(tmp_path):
    assert normalize_bucket("my-trail-bucket") == "s3://my-trail-bucket"
    assert normalize_bucket("s3://my-trail-bucket/") == "s3://my-trail-bucket"
    assert normalize_bucket(f"file://{tmp_path}") == f"file://{tmp_path}"
    with pytest.raises(InvalidSource, match="--prefix logs"):
        normalize_bucket("s3://my-trail-bucket/logs")
    with pytest.raises(InvalidSource, match="three slashes"):
        normalize_bucket("file://relative/path")
    with pytest.raises(InvalidSource, match="not a valid S3 bucket name"):
        normalize_bucket("s3://Bad_Bucket")


def test_a_source_id_is_derived_and_survives_the_registry_record():
    source = new_source("1234-5678-9012", "eu-west-1", "s3://bucket-a", prefix="/team/", org_id="o-abcdefghij")
    assert source.source_id == "cloudtrail-123456789012-eu-west-1"
    assert source.prefix == "team"
    assert Source.from_record(source.to_record()) == source


def test_a_prefix_that_includes_awslogs_is_rejected():
    with pytest.raises(InvalidSource, match="only the part before it"):
        new_source("123456789012", "us-east-1", "s3://bucket-a", prefix="team/AWSLogs/123456789012")
