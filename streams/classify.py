"""Classifications an analyst filters on, derived from one CloudTrail record. Pure functions, no I/O.

Each rule is a small table, so a missing API or user agent is a one-line fix; unknown inputs fall into an
explicit catch-all ("other", "unknown") rather than a guess.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator, Mapping
from functools import lru_cache
from typing import Any

# --- action class ------------------------------------------------------------------------------------------

AUTH_EVENTS = frozenset(
    {
        "ConsoleLogin",
        "CheckMfa",
        "SwitchRole",
        "ExitRole",
        "AssumeRole",
        "AssumeRoleWithSAML",
        "AssumeRoleWithWebIdentity",
        "AssumeRoot",
        "GetSessionToken",
        "GetFederationToken",
        "GetSigninToken",
        "GetRoleCredentials",
        "CreateToken",
        "Federate",
        "Authenticate",
        "CredentialChallenge",
        "CredentialVerification",
        "UserAuthentication",
        "PasswordUpdated",
    }
)
# First match wins; checked against the API name when the call is not read-only.
_WRITE_PREFIXES: tuple[tuple[str, str], ...] = (
    ("Delete", "delete"),
    ("Remove", "delete"),
    ("Terminate", "delete"),
    ("Deregister", "delete"),
    ("Release", "delete"),
    ("Purge", "delete"),
    ("Destroy", "delete"),
    ("Revoke", "delete"),
    ("Detach", "delete"),
    ("Disassociate", "delete"),
    ("Unsubscribe", "delete"),
    ("Create", "create"),
    ("Run", "create"),
    ("Allocate", "create"),
    ("Import", "create"),
    ("Register", "create"),
    ("Request", "create"),
    ("Issue", "create"),
    ("Copy", "create"),
    ("Add", "create"),
    ("Upload", "create"),
    ("Publish", "create"),
)
_READ_PREFIXES = (
    "Get", "List", "Describe", "Head", "Lookup", "Search", "Scan", "Query", "Select", "BatchGet", "Check",
    "Verify", "Validate", "Estimate", "Preview", "Test", "Download", "View", "Filter", "Detect", "Decrypt",
    "Encrypt", "GenerateDataKey", "Sign", "Simulate",
)  # fmt: skip


def action_class(event_name: str, read_only: bool | None, event_type: str | None) -> str:
    """read / create / modify / delete / auth / other, from the API name and readOnly."""
    if event_type == "AwsConsoleSignIn" or event_name in AUTH_EVENTS:
        return "auth"
    if read_only is True or (read_only is None and event_name.startswith(_READ_PREFIXES)):
        return "read"
    for prefix, kind in _WRITE_PREFIXES:
        if event_name.startswith(prefix):
            return kind
    return "modify" if read_only is False else "other"


# --- user agent ---------------------------------------------------------------------------------------------

_AGENTS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE), family)
    for pattern, family in (
        (r"^aws internal$|^[a-z0-9.-]+\.amazonaws\.com$|aws-internal", "service"),
        (r"console|signin\.amazonaws\.com|^Mozilla/", "console"),
        (r"aws-cli/", "cli"),
        (r"HashiCorp|Terraform", "terraform"),
        (r"aws-cdk|CloudFormation", "cloudformation"),
        (r"Boto3/|Botocore/|aiobotocore", "sdk-python"),
        (r"aws-sdk-go", "sdk-go"),
        (r"aws-sdk-java|aws-java-sdk", "sdk-java"),
        (r"aws-sdk-js|aws-sdk-nodejs|aws-sdk/", "sdk-javascript"),
        (r"aws-sdk-dotnet|AWSSDK\.", "sdk-dotnet"),
        (r"aws-sdk-ruby", "sdk-ruby"),
        (r"aws-sdk-php", "sdk-php"),
        (r"aws-sdk-rust", "sdk-rust"),
        (r"aws-sdk-cpp", "sdk-cpp"),
        (r"PowerShell", "powershell"),
    )
)


@lru_cache(maxsize=4096)  # a few callers' agents make most of a trail: a regex search each costs ~15 us
def user_agent_family(user_agent: str | None) -> str | None:
    """console, cli, sdk-<language>, service, terraform, cloudformation, powershell or other."""
    if not user_agent:
        return None
    for pattern, family in _AGENTS:
        if pattern.search(user_agent):
            return family
    return "other"


# --- caller -------------------------------------------------------------------------------------------------


@lru_cache(maxsize=4096)
def ip_version(source: str | None) -> int | None:
    """4 or 6 when sourceIPAddress is an address; None for service callers such as "AWS Internal"."""
    if not source:
        return None
    try:
        return ipaddress.ip_address(source).version
    except ValueError:
        return None


# --- resources ----------------------------------------------------------------------------------------------


def partition(region: str) -> str:
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


# requestParameters key -> ARN template; {p} partition, {r} region, {a} account, {v} the value.
_PARAMETER_ARNS: Mapping[str, str] = {
    "bucketName": "arn:{p}:s3:::{v}",
    "instanceId": "arn:{p}:ec2:{r}:{a}:instance/{v}",
    "groupId": "arn:{p}:ec2:{r}:{a}:security-group/{v}",
    "vpcId": "arn:{p}:ec2:{r}:{a}:vpc/{v}",
    "roleName": "arn:{p}:iam::{a}:role/{v}",
    "userName": "arn:{p}:iam::{a}:user/{v}",
    "groupName": "arn:{p}:iam::{a}:group/{v}",
    "policyArn": "{v}",
    "roleArn": "{v}",
    "functionName": "arn:{p}:lambda:{r}:{a}:function:{v}",
    "keyId": "arn:{p}:kms:{r}:{a}:key/{v}",
    "secretId": "arn:{p}:secretsmanager:{r}:{a}:secret:{v}",
    "trailName": "arn:{p}:cloudtrail:{r}:{a}:trail/{v}",
    "dBInstanceIdentifier": "arn:{p}:rds:{r}:{a}:db:{v}",
    "logGroupName": "arn:{p}:logs:{r}:{a}:log-group:{v}",
    "topicArn": "{v}",
}


# ARNs kept per event. A call on thousands of resources (TerminateInstances with 20,000 instance ids: a 780 kB
# record) made a 2 MB event, over the largest message the worker may send; the record keeps every one of them.
MAX_RESOURCES = 100


def resource_arns(record: Mapping[str, Any], region: str, account: str) -> list[str]:
    """ARNs the call touched: `resources[].ARN`, then well-known request parameters, de-duplicated, in order; the
    first MAX_RESOURCES of them."""
    seen: dict[str, None] = {}
    resources = record.get("resources")
    if isinstance(resources, list):
        for item in resources:
            if isinstance(item, dict) and isinstance(item.get("ARN"), str):
                seen[item["ARN"]] = None
    parameters = record.get("requestParameters")
    if isinstance(parameters, dict):
        for key, value in _parameters(parameters):
            template = _PARAMETER_ARNS.get(key)
            if template:
                arn = (
                    value
                    if value.startswith("arn:")
                    else template.format(p=partition(region), r=region, a=account, v=value)
                )
                seen[arn] = None
    return list(seen)[:MAX_RESOURCES]


def _parameters(parameters: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """(key, value) of string parameters at the top level and in EC2's `...Set.items[]` lists."""
    for key, value in parameters.items():
        if isinstance(value, str) and value:
            yield key, value
        elif isinstance(value, dict) and isinstance(value.get("items"), list):
            for item in value["items"]:
                if isinstance(item, dict):
                    yield from ((k, v) for k, v in item.items() if isinstance(v, str) and v)
