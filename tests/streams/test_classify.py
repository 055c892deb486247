import pytest

from streams.classify import MAX_RESOURCES, action_class, ip_version, partition, resource_arns, user_agent_family


@pytest.mark.parametrize(
    ("name", "read_only", "event_type", "expected"),
    [
        ("DescribeInstances", True, "AwsApiCall", "read"),
        ("GetObject", None, "AwsApiCall", "read"),
        ("Decrypt", True, "AwsApiCall", "read"),
        ("CreateUser", False, "AwsApiCall", "create"),
        ("RunInstances", False, "AwsApiCall", "create"),
        ("PutBucketPolicy", False, "AwsApiCall", "modify"),
        ("StopLogging", False, "AwsApiCall", "modify"),
        ("AttachUserPolicy", False, "AwsApiCall", "modify"),
        ("DeleteBucket", False, "AwsApiCall", "delete"),
        ("TerminateInstances", False, "AwsApiCall", "delete"),
        ("DetachRolePolicy", False, "AwsApiCall", "delete"),
        ("ConsoleLogin", None, "AwsConsoleSignIn", "auth"),
        ("AssumeRole", True, "AwsApiCall", "auth"),
        ("GetSessionToken", True, "AwsApiCall", "auth"),
        ("SomethingNew", None, "AwsServiceEvent", "other"),
    ],
)
def test_action_classes(name, read_only, event_type, expected):
    assert action_class(name, read_only, event_type) == expected


@pytest.mark.parametrize(
    ("agent", "family"),
    [
        ("aws-cli/2.15.0 Python/3.11.6 Linux/6.5 exe/x86_64.ubuntu.22", "cli"),
        ("Boto3/1.26.165 Python/3.10.6 Linux/5.19.0 Botocore/1.29.165", "sdk-python"),
        ("aws-sdk-go/1.41.4 (go1.18.3; linux; amd64)", "sdk-go"),
        ("aws-sdk-java/2.20.0 Linux/5.10", "sdk-java"),
        ("aws-sdk-nodejs/2.1400.0 linux/v18", "sdk-javascript"),
        ("APN/1.0 HashiCorp/1.0 Terraform/1.5.2 (+https://www.terraform.io)", "terraform"),
        ("[S3Console/0.4, aws-internal/3 aws-sdk-java/1.12.488]", "service"),
        ("signin.amazonaws.com", "service"),
        ("Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:109.0) Gecko/20100101 Firefox/114.0", "console"),
        ("AWS Internal", "service"),
        ("secretsmanager.amazonaws.com", "service"),
        ("stratus-red-team_39f95f43", "other"),
        (None, None),
    ],
)
def test_user_agent_families(agent, family):
    assert user_agent_family(agent) == family


def test_ip_versions():
    assert (ip_version("203.0.113.7"), ip_version("2001:db8::1"), ip_version("AWS Internal"), ip_version(None)) == (
        4,
        6,
        None,
        None,
    )


def test_parameter_arns_use_the_region_partition_and_keep_given_arns():
    record = {
        "requestParameters": {
            "bucketName": "logs",
            "instancesSet": {"items": [{"instanceId": "i-1"}, {"instanceId": "i-2"}]},
            "policyArn": "arn:aws-cn:iam::aws:policy/ReadOnlyAccess",
            "keyId": "arn:aws-cn:kms:cn-north-1:111122223333:key/k",
        },
        "resources": [{"ARN": "arn:aws-cn:s3:::logs"}],
    }
    assert resource_arns(record, "cn-north-1", "111122223333") == [
        "arn:aws-cn:s3:::logs",
        "arn:aws-cn:ec2:cn-north-1:111122223333:instance/i-1",
        "arn:aws-cn:ec2:cn-north-1:111122223333:instance/i-2",
        "arn:aws-cn:iam::aws:policy/ReadOnlyAccess",
        "arn:aws-cn:kms:cn-north-1:111122223333:key/k",
    ]
    assert partition("us-gov-west-1") == "aws-us-gov"


def test_a_call_on_thousands_of_resources_keeps_the_first_hundred_arns():
    record = {"requestParameters": {"instancesSet": {"items": [{"instanceId": f"i-{n}"} for n in range(20_000)]}}}
    arns = resource_arns(record, "us-east-1", "111122223333")
    assert len(arns) == MAX_RESOURCES == 100
    assert arns[0] == "arn:aws:ec2:us-east-1:111122223333:instance/i-0"
    assert arns[-1] == "arn:aws:ec2:us-east-1:111122223333:instance/i-99"
