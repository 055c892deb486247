"""The API calls of `trailhouse.generate`'s principals, as CloudTrail logs them.

`ACTIONS` is the weighted table of calls; each has a builder that fills `requestParameters`, `responseElements`
and `resources` the way CloudTrail logs that call, and says which resource an error message would name. The
error helpers give AWS's codes and messages for denied, throttled and not-found calls. A few values carry
non-ASCII text, quotes and backslashes on purpose, so search and JSON escaping get exercised.

Builders run once per record: they get the record's seeded `random.Random`, the account's `Estate`, the region
and the event time (epoch seconds). They must not mutate anything they did not create, because constant dicts
are shared between records.
"""

from __future__ import annotations

import base64
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import orjson

from trailhouse.generate_catalog import ALNUM, FUNCTIONS, Estate, aws_date, aws_id, hex_id, uuid

# requestParameters, responseElements, resources, and the ARN of the resource an error message names ("*": none).
Call = tuple[dict | None, dict | None, list | None, str]
Builder = Callable[[random.Random, Estate, str, int], Call]

# Services whose IAM action prefix or access-denied errorCode differ from the default (host name,
# "AccessDeniedException").
_DENIED = {
    "ec2": ("ec2", "Client.UnauthorizedOperation"),
    "monitoring": ("cloudwatch", "AccessDenied"),
    "sns": ("sns", "AuthorizationError"),
    **{
        s: (s, "AccessDenied")
        for s in ("s3", "iam", "sts", "cloudformation", "rds", "sqs", "elasticloadbalancing", "autoscaling", "route53")
    },
}


def access_denied(source: str, event_name: str, caller_arn: str, target: str, token: str) -> tuple[str, str]:
    """The errorCode and errorMessage AWS logs when `caller_arn` may not call `event_name` on `target`;
    `token` stands in for EC2's encoded authorization message."""
    service = source.split(".", 1)[0]
    prefix, code = _DENIED.get(service, (service, "AccessDeniedException"))
    action = f"{prefix}:{event_name.rstrip('v0123456789') if service == 'lambda' else event_name}"
    if service == "ec2":
        return code, f"You are not authorized to perform this operation. Encoded authorization failure message: {token}"
    if service == "s3":
        return code, "Access Denied"
    return code, (
        f"User: {caller_arn} is not authorized to perform: {action} on resource: {target} "
        f"because no identity-based policy allows the {action} action"
    )


def throttled(source: str) -> tuple[str, str]:
    if source == "ec2.amazonaws.com":
        return "Client.RequestLimitExceeded", "Request limit exceeded."
    if source == "s3.amazonaws.com":
        return "SlowDown", "Please reduce your request rate."
    return "ThrottlingException", "Rate exceeded"


_TAGS = (
    {"key": "Owner", "value": "Zoë Ångström"},
    {"key": "Projekt", "value": "Übersicht 東京"},
    {"key": "Name", "value": 'web "blue" pool'},
    {"key": "CostCenter", "value": "R&D\\Platform"},
)
_POLICY = orjson.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": "*"}]}
).decode()
_TRUST = orjson.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ],
    }
).decode()
_METRIC_FILTER = '{ ($.errorCode = "*UnauthorizedOperation") || ($.errorCode = "AccessDenied*") }'
_MANAGED_POLICIES = ("AdministratorAccess", "ReadOnlyAccess", "AmazonS3FullAccess", "IAMFullAccess")


def _const(request: dict | None = None) -> Builder:
    """A call whose parameters never vary (mostly lists and describes); no resource to name in errors."""

    def build(rng: random.Random, e: Estate, region: str, t: int) -> Call:
        return request, None, None, "*"

    return build


def _named(key: str, names: tuple[str, ...] | str, arn: str) -> Builder:
    """A call whose only parameter names one resource: from `names`, or from the Estate field of that name. `arn`
    is a template with {region}, {account} and {name}."""

    def build(rng: random.Random, e: Estate, region: str, t: int) -> Call:
        name = rng.choice(getattr(e, names) if isinstance(names, str) else names)
        return {key: name}, None, None, arn.format(region=region, account=e.account, name=name)

    return build


def _bucket(sub: str | None) -> Builder:
    def build(rng: random.Random, e: Estate, region: str, t: int) -> Call:
        return bucket_call(e, rng.choice(e.buckets), region, sub)

    return build


def bucket_call(e: Estate, bucket: str, region: str, sub: str | None, **extra: object) -> Call:
    """S3 bucket calls: the subresource queried (`acl`, `policy`, ...) is logged as an empty parameter."""
    request = {**extra, "bucketName": bucket, "Host": f"{bucket}.s3.{region}.amazonaws.com"}
    if sub:
        request[sub] = ""
    arn = f"arn:aws:s3:::{bucket}"
    return request, None, [{"accountId": e.account, "type": "AWS::S3::Bucket", "ARN": arn}], arn


def _put_bucket_policy(rng: random.Random, e: Estate, region: str, t: int) -> Call:
    b = rng.choice(e.buckets)
    statement = {
        "Sid": "AllowCloudTrail",
        "Effect": "Allow",
        "Principal": {"Service": "cloudtrail.amazonaws.com"},
        "Action": "s3:PutObject",
        "Resource": f"arn:aws:s3:::{b}/AWSLogs/*",
    }
    return bucket_call(e, b, region, "policy", bucketPolicy={"Version": "2012-10-17", "Statement": [statement]})


def _instances_change(state: tuple[int, str], previous: tuple[int, str]) -> Builder:
    def build(rng: random.Random, e: Estate, region: str, t: int) -> Call:
        i = rng.choice(e.instances)
        item = {
            "instanceId": i,
            "currentState": {"code": state[0], "name": state[1]},
            "previousState": {"code": previous[0], "name": previous[1]},
        }
        response = {"requestId": uuid(rng), "instancesSet": {"items": [item]}}
        return {"instancesSet": {"items": [{"instanceId": i}]}}, response, None, _instance_arn(e, region, i)

    return build


def _instance_arn(e: Estate, region: str, instance: str) -> str:
    return f"arn:aws:ec2:{region}:{e.account}:instance/{instance}"


def _run_instances(rng: random.Random, e: Estate, region: str, t: int) -> Call:
    i, ami, tags = "i-0" + hex_id(rng, 16), "ami-0" + hex_id(rng, 16), [rng.choice(_TAGS)]
    request = {
        "instancesSet": {"items": [{"imageId": ami, "minCount": 1, "maxCount": 1}]},
        "instanceType": "t3.micro",
        "blockDeviceMapping": {},
        "monitoring": {"enabled": False},
        "disableApiTermination": False,
        "tagSpecificationSet": {"items": [{"resourceType": "instance", "tags": tags}]},
    }
    instance = {
        "instanceId": i,
        "imageId": ami,
        "instanceState": {"code": 0, "name": "pending"},
        "instanceType": "t3.micro",
        "tagSet": {"items": tags},
    }
    response = {
        "requestId": uuid(rng),
        "reservationId": "r-0" + hex_id(rng, 16),
        "ownerId": e.account,
        "instancesSet": {"items": [instance]},
    }
    return request, response, None, _instance_arn(e, region, "*")


def _create_tags(rng: random.Random, e: Estate, region: str, t: int) -> Call:
    i = rng.choice(e.instances)
    request = {"resourcesSet": {"items": [{"resourceId": i}]}, "tagSet": {"items": [rng.choice(_TAGS)]}}
    return request, {"requestId": uuid(rng), "_return": True}, None, _instance_arn(e, region, i)


def _authorize_ingress(rng: random.Random, e: Estate, region: str, t: int) -> Call:
    sg = rng.choice(e.security_groups)
    cidr = {"cidrIp": "0.0.0.0/0", "description": 'temp "debug" access'}
    permission = {"ipProtocol": "tcp", "fromPort": 22, "toPort": 22, "groups": {}, "ipRanges": {"items": [cidr]}}
    request = {"groupId": sg, "ipPermissions": {"items": [permission]}}
    arn = f"arn:aws:ec2:{region}:{e.account}:security-group/{sg}"
    return request, {"requestId": uuid(rng), "_return": True}, None, arn


def _new_user(rng: random.Random, e: Estate, region: str, t: int) -> Call:
    u = "svc-" + hex_id(rng, 6)
    arn = f"arn:aws:iam::{e.account}:user/{u}"
    user = {
        "path": "/",
        "userName": u,
        "userId": "AIDA" + aws_id(rng, 17),
        "arn": arn,
        "createDate": aws_date(t, False),
    }
    return {"path": "/", "userName": u}, {"user": user}, None, arn


def _temp_user(rng: random.Random, e: Estate, region: str, t: int) -> Call:
    u = "svc-" + hex_id(rng, 6)
    return {"userName": u}, None, None, f"arn:aws:iam::{e.account}:user/{u}"


def _attach_user_policy(rng: random.Random, e: Estate, region: str, t: int) -> Call:
    u = rng.choice(e.humans + e.automation)
    request = {"userName": u, "policyArn": f"arn:aws:iam::aws:policy/{rng.choice(_MANAGED_POLICIES)}"}
    return request, None, None, f"arn:aws:iam::{e.account}:user/{u}"


def _create_access_key(rng: random.Random, e: Estate, region: str, t: int) -> Call:
    u = rng.choice(e.automation)
    key = {"userName": u, "accessKeyId": "AKIA" + aws_id(rng, 16), "status": "Active", "createDate": aws_date(t, False)}
    return {"userName": u}, {"accessKey": key}, None, f"arn:aws:iam::{e.account}:user/{u}"


def _put_role_policy(rng: random.Random, e: Estate, region: str, t: int) -> Call:
    r = rng.choice(e.roles[1:])
    request = {"roleName": r, "policyName": "inline-s3-read", "policyDocument": _POLICY}
    return request, None, None, f"arn:aws:iam::{e.account}:role/{r}"


def _create_role(rng: random.Random, e: Estate, region: str, t: int) -> Call:
    r = "tmp-" + hex_id(rng, 8)
    arn = f"arn:aws:iam::{e.account}:role/{r}"
    request = {"roleName": r, "assumeRolePolicyDocument": _TRUST, "description": "Rôle temporaire de l'équipe data"}
    role = {
        "path": "/",
        "roleName": r,
        "roleId": "AROA" + aws_id(rng, 17),
        "arn": arn,
        "createDate": aws_date(t, False),
        "assumeRolePolicyDocument": _TRUST,
    }
    return request, {"role": role}, None, arn


def assume_role(
    rng: random.Random, e: Estate, region: str, t: int, role: str | None = None, session: str | None = None
) -> Call:
    role = role or rng.choice(e.roles[1:])
    session = session or rng.choice(("deploy", "terraform", "audit", f"botocore-session-{t}"))
    arn = f"arn:aws:iam::{e.account}:role/{role}"
    token = "IQoJb3JpZ2luX2VjE" + base64.b64encode(rng.randbytes(96)).decode()
    credentials = {"accessKeyId": "ASIA" + aws_id(rng, 16), "sessionToken": token, "expiration": aws_date(t + 3600)}
    user = {
        "assumedRoleId": f"AROA{aws_id(rng, 17)}:{session}",
        "arn": f"arn:aws:sts::{e.account}:assumed-role/{role}/{session}",
    }
    request = {"roleArn": arn, "roleSessionName": session, "durationSeconds": 3600}
    resources = [{"accountId": e.account, "type": "AWS::IAM::Role", "ARN": arn}]
    return request, {"credentials": credentials, "assumedRoleUser": user}, resources, arn


def _kms(data_key: bool) -> Builder:
    def build(rng: random.Random, e: Estate, region: str, t: int) -> Call:
        arn = f"arn:aws:kms:{region}:{e.account}:key/{rng.choice(e.keys)}"
        request = {"keyId": arn, "keySpec": "AES_256"} if data_key else {"encryptionAlgorithm": "SYMMETRIC_DEFAULT"}
        return request, None, [{"accountId": e.account, "type": "AWS::KMS::Key", "ARN": arn}], arn

    return build


def _update_function(rng: random.Random, e: Estate, region: str, t: int) -> Call:
    f = rng.choice(FUNCTIONS)
    arn = f"arn:aws:lambda:{region}:{e.account}:function:{f}"
    request = {"functionName": f, "description": "Resizes images 🖼️ for the storefront", "timeout": 30}
    return request, {"functionName": f, "functionArn": arn, "runtime": "python3.12", "state": "Active"}, None, arn


def _log_stream(rng: random.Random, e: Estate, region: str, t: int) -> Call:
    group = f"/aws/lambda/{rng.choice(FUNCTIONS)}"
    stream = f"{time.strftime('%Y/%m/%d', time.gmtime(t))}/[$LATEST]{hex_id(rng, 32)}"
    return (
        {"logGroupName": group, "logStreamName": stream},
        None,
        None,
        f"arn:aws:logs:{region}:{e.account}:log-group:{group}",
    )


def _metric_filter(rng: random.Random, e: Estate, region: str, t: int) -> Call:
    metric = {"metricName": "UnauthorizedAPICalls", "metricNamespace": "CISBenchmark", "metricValue": "1"}
    request = {
        "logGroupName": "cloudtrail/management",
        "filterName": "unauthorized-api-calls",
        "filterPattern": _METRIC_FILTER,
        "metricTransformations": [metric],
    }
    return request, None, None, f"arn:aws:logs:{region}:{e.account}:log-group:cloudtrail/management"


def _secret(rng: random.Random, e: Estate, region: str, t: int) -> Call:
    arn = f"arn:aws:secretsmanager:{region}:{e.account}:secret:{rng.choice(e.secrets)}"
    return {"secretId": arn}, None, None, arn


def _create_secret(rng: random.Random, e: Estate, region: str, t: int) -> Call:
    name = "legacy/svc-" + hex_id(rng, 5)
    arn = f"arn:aws:secretsmanager:{region}:{e.account}:secret:{name}-{''.join(rng.choices(ALNUM, k=6))}"
    description = 'Legacy service account for C:\\deploy\\svc — "do not rotate" ✓'
    request = {"name": name, "clientRequestToken": uuid(rng), "description": description}
    return request, {"aRN": arn, "name": name, "versionId": uuid(rng)}, None, arn


def _parameter(rng: random.Random, e: Estate, region: str, t: int) -> Call:
    name = rng.choice(("/app/prod/db-host", "/app/prod/feature-flags", "/ci/terraform/version"))
    return {"name": name, "withDecryption": True}, None, None, f"arn:aws:ssm:{region}:{e.account}:parameter{name}"


def _put_parameter(rng: random.Random, e: Estate, region: str, t: int) -> Call:
    name = "/app/prod/greeting"
    request = {
        "name": name,
        "description": "Grüße aus der Pipeline",
        "type": "String",
        "overwrite": True,
        "tier": "Standard",
    }
    arn = f"arn:aws:ssm:{region}:{e.account}:parameter{name}"
    return request, {"version": rng.randint(2, 40), "tier": "Standard"}, None, arn


def _instance_info(rng: random.Random, e: Estate, region: str, t: int) -> Call:
    request = {
        "instanceId": rng.choice(e.instances),
        "agentVersion": "3.2.1297.0",
        "agentStatus": "Active",
        "platformType": "Linux",
        "platformName": "Amazon Linux",
        "platformVersion": "2023",
    }
    return request, None, None, "*"


@dataclass(frozen=True, slots=True)
class Action:
    """One API call principals make. `weights` are relative frequencies per persona (human, automation,
    workload); `not_found` is the (errorCode, errorMessage template with {name} and {arn}, or None) of the call
    failing on a missing resource; `via` lists services that may make the call on the caller's behalf."""

    source: str
    name: str
    read_only: bool
    weights: tuple[float, float, float]
    build: Builder
    not_found: tuple[str, str | None] | None = None
    via: tuple[str, ...] = ()


def _a(
    source: str,
    name: str,
    read_only: bool,
    weights: tuple[float, float, float],
    build: Builder,
    not_found: tuple[str, str | None] | None = None,
    via: tuple[str, ...] = (),
) -> Action:
    return Action(f"{source}.amazonaws.com", name, read_only, weights, build, not_found, via)


_NO_ROLE = ("NoSuchEntityException", "The role with name {name} cannot be found.")
_NO_USER = ("NoSuchEntityException", "The user with name {name} cannot be found.")
_NO_INSTANCE = ("Client.InvalidInstanceID.NotFound", "The instance ID '{name}' does not exist")
_NO_SECRET = ("ResourceNotFoundException", "Secrets Manager can't find the specified secret.")
_NO_POLICY = ("NoSuchBucketPolicy", "The bucket policy does not exist")
_NO_FUNCTION = ("ResourceNotFoundException", "Function not found: {arn}")
_NO_TABLE = ("ResourceNotFoundException", "Requested resource not found")
_NO_STACK = ("ValidationError", "Stack with id {name} does not exist")

_instance = _named("instanceId", "instances", "arn:aws:ec2:{region}:{account}:instance/{name}")
_role = _named("roleName", "roles", "arn:aws:iam::{account}:role/{name}")
_user = _named("userName", "humans", "arn:aws:iam::{account}:user/{name}")
_function = _named("functionName", FUNCTIONS, "arn:aws:lambda:{region}:{account}:function:{name}")
_trail = _named("name", ("management-events",), "arn:aws:cloudtrail:us-east-1:{account}:trail/{name}")
_table = _named("tableName", ("orders", "sessions", "audit-log"), "arn:aws:dynamodb:{region}:{account}:table/{name}")
_queue = _named("queueUrl", ("orders-ingest", "orders-dlq"), "https://sqs.{region}.amazonaws.com/{account}/{name}")
_topic = _named("topicArn", ("alerts", "deploy-events"), "arn:aws:sns:{region}:{account}:{name}")
_service = _named("service", ("web", "api", "worker"), "arn:aws:ecs:{region}:{account}:service/main/{name}")
_stack = _named(
    "stackName",
    ("network-baseline", "app-orders", "CDKToolkit"),
    "arn:aws:cloudformation:{region}:{account}:stack/{name}/*",
)
_db = _named("dBInstanceIdentifier", ("orders-db", "analytics-replica"), "arn:aws:rds:{region}:{account}:db:{name}")
_alarm = _named("alarmName", ("orders-5xx", "cpu-high"), "arn:aws:cloudwatch:{region}:{account}:alarm:{name}")
_rule = _named("name", ("nightly-report", "guardduty-findings"), "arn:aws:events:{region}:{account}:rule/{name}")
_detector = _named(
    "detectorId", ("f2c6a1d7e8b94c3d9a1b2c3d4e5f6a7b",), "arn:aws:guardduty:{region}:{account}:detector/{name}"
)
_start = _instances_change((0, "pending"), (80, "stopped"))
_stop = _instances_change((64, "stopping"), (16, "running"))
_terminate = _instances_change((32, "shutting-down"), (16, "running"))
_DECRYPT_VIA = ("secretsmanager.amazonaws.com", "ssm.amazonaws.com", "lambda.amazonaws.com")
_DATA_KEY_VIA = ("s3.amazonaws.com", "dynamodb.amazonaws.com")

ACTIONS: tuple[Action, ...] = (
    _a("sts", "GetCallerIdentity", True, (30, 40, 20), _const()),
    _a("sts", "AssumeRole", True, (25, 30, 10), assume_role, _NO_ROLE),
    _a("sts", "GetSessionToken", True, (3, 0, 0), _const({"durationSeconds": 43200})),
    _a("s3", "ListBuckets", True, (30, 10, 5), _const({"Host": "s3.amazonaws.com"})),
    _a("s3", "GetBucketAcl", True, (12, 12, 3), _bucket("acl")),
    _a("s3", "GetBucketPolicy", True, (8, 10, 2), _bucket("policy"), _NO_POLICY),
    _a("s3", "GetBucketLocation", True, (6, 6, 15), _bucket("location")),
    _a("s3", "GetBucketVersioning", True, (4, 10, 0), _bucket("versioning")),
    _a("s3", "PutBucketPolicy", False, (2, 3, 0), _put_bucket_policy),
    _a("s3", "PutBucketPublicAccessBlock", False, (1, 2, 0), _bucket("publicAccessBlock")),
    _a("ec2", "DescribeInstances", True, (40, 40, 15), _const({"instancesSet": {}, "filterSet": {}})),
    _a("ec2", "DescribeSecurityGroups", True, (15, 25, 0), _const({"securityGroupSet": {}, "filterSet": {}})),
    _a("ec2", "DescribeVpcs", True, (10, 20, 0), _const({"vpcSet": {}, "filterSet": {}})),
    _a("ec2", "DescribeRegions", True, (8, 10, 5), _const({"regionSet": {}, "allRegions": False})),
    _a("ec2", "DescribeInstanceStatus", True, (5, 5, 10), _instance, _NO_INSTANCE),
    _a("ec2", "RunInstances", False, (3, 5, 0), _run_instances),
    _a("ec2", "StartInstances", False, (2, 2, 0), _start, _NO_INSTANCE),
    _a("ec2", "StopInstances", False, (2, 2, 0), _stop, _NO_INSTANCE),
    _a("ec2", "TerminateInstances", False, (1, 3, 0), _terminate, _NO_INSTANCE),
    _a("ec2", "CreateTags", False, (3, 6, 2), _create_tags),
    _a("ec2", "AuthorizeSecurityGroupIngress", False, (1, 2, 0), _authorize_ingress),
    _a("iam", "GetUser", True, (15, 8, 0), _user, _NO_USER),
    _a("iam", "ListUsers", True, (8, 8, 0), _const()),
    _a("iam", "ListRoles", True, (8, 10, 0), _const()),
    _a("iam", "GetRole", True, (8, 20, 0), _role, _NO_ROLE),
    _a("iam", "ListAttachedRolePolicies", True, (4, 12, 0), _role, _NO_ROLE),
    _a("iam", "CreateUser", False, (1, 1, 0), _new_user),
    _a("iam", "AttachUserPolicy", False, (1, 1, 0), _attach_user_policy, _NO_USER),
    _a("iam", "CreateAccessKey", False, (1, 1, 0), _create_access_key, _NO_USER),
    _a("iam", "DeleteUser", False, (1, 1, 0), _temp_user, _NO_USER),
    _a("iam", "PutRolePolicy", False, (1, 2, 0), _put_role_policy, _NO_ROLE),
    _a("iam", "CreateRole", False, (1, 2, 0), _create_role),
    _a("kms", "Decrypt", True, (6, 8, 60), _kms(False), via=_DECRYPT_VIA),
    _a("kms", "GenerateDataKey", True, (2, 4, 30), _kms(True), via=_DATA_KEY_VIA),
    _a("kms", "DescribeKey", True, (3, 8, 2), _kms(False)),
    _a("kms", "ListAliases", True, (3, 4, 0), _const()),
    _a("lambda", "ListFunctions20150331", True, (8, 8, 0), _const()),
    _a("lambda", "GetFunction20150331v2", True, (5, 10, 0), _function, _NO_FUNCTION),
    _a("lambda", "UpdateFunctionCode20150331v2", False, (1, 6, 0), _update_function),
    _a("cloudtrail", "DescribeTrails", True, (4, 6, 0), _const({"trailNameList": [], "includeShadowTrails": True})),
    _a("cloudtrail", "GetTrailStatus", True, (3, 4, 0), _trail),
    _a("cloudtrail", "LookupEvents", True, (5, 2, 0), _const({"maxResults": 50})),
    _a("cloudtrail", "StopLogging", False, (0.2, 0.1, 0), _trail),
    _a("logs", "DescribeLogGroups", True, (8, 8, 0), _const({"limit": 50})),
    _a("logs", "CreateLogStream", False, (0, 0, 25), _log_stream),
    _a("logs", "PutMetricFilter", False, (0.5, 1, 0), _metric_filter),
    _a("secretsmanager", "GetSecretValue", True, (4, 6, 40), _secret, _NO_SECRET),
    _a("secretsmanager", "DescribeSecret", True, (3, 6, 5), _secret, _NO_SECRET),
    _a("secretsmanager", "ListSecrets", True, (4, 3, 0), _const()),
    _a("secretsmanager", "CreateSecret", False, (0.5, 1, 0), _create_secret),
    _a("ssm", "GetParameter", True, (5, 10, 30), _parameter, ("ParameterNotFound", None)),
    _a("ssm", "DescribeParameters", True, (4, 6, 0), _const()),
    _a("ssm", "PutParameter", False, (1, 3, 0), _put_parameter),
    _a("ssm", "UpdateInstanceInformation", False, (0, 0, 40), _instance_info),
    _a("dynamodb", "DescribeTable", True, (4, 8, 15), _table, _NO_TABLE),
    _a("dynamodb", "ListTables", True, (4, 4, 2), _const()),
    _a("sqs", "ListQueues", True, (3, 3, 2), _const()),
    _a("sqs", "GetQueueAttributes", True, (2, 4, 10), _queue),
    _a("sns", "ListTopics", True, (3, 3, 0), _const()),
    _a("sns", "Subscribe", False, (0.5, 1, 0), _topic),
    _a("ecr", "GetAuthorizationToken", True, (3, 15, 15), _const()),
    _a("ecr", "DescribeRepositories", True, (2, 6, 0), _const()),
    _a("ecs", "ListClusters", True, (3, 6, 0), _const()),
    _a("ecs", "UpdateService", False, (0.5, 4, 0), _service),
    _a("cloudformation", "DescribeStacks", True, (6, 12, 0), _stack, _NO_STACK),
    _a("cloudformation", "UpdateStack", False, (0.5, 3, 0), _stack),
    _a("rds", "DescribeDBInstances", True, (5, 8, 0), _const()),
    _a("rds", "CreateDBSnapshot", False, (0.3, 2, 0), _db),
    _a("monitoring", "DescribeAlarms", True, (6, 6, 0), _const({"maxRecords": 100})),
    _a("monitoring", "PutMetricAlarm", False, (0.5, 3, 0), _alarm),
    _a("events", "ListRules", True, (2, 4, 0), _const()),
    _a("events", "PutRule", False, (0.3, 2, 0), _rule),
    _a("elasticloadbalancing", "DescribeLoadBalancers", True, (3, 8, 2), _const()),
    _a("elasticloadbalancing", "DescribeTargetHealth", True, (2, 4, 8), _const()),
    _a("autoscaling", "DescribeAutoScalingGroups", True, (2, 6, 4), _const()),
    _a("route53", "ListHostedZones", True, (3, 5, 0), _const()),
    _a("organizations", "DescribeOrganization", True, (3, 3, 1), _const()),
    _a("guardduty", "ListDetectors", True, (2, 3, 0), _const()),
    _a("guardduty", "DeleteDetector", False, (0.1, 0.1, 0), _detector),
    _a("securityhub", "GetFindings", True, (2, 2, 0), _const({"maxResults": 100})),
    _a("access-analyzer", "ListAnalyzers", True, (1, 2, 0), _const()),
    _a("health", "DescribeEventAggregates", True, (4, 0, 0), _const({"aggregateField": "eventTypeCategory"})),
)

# AWS services acting in the account (userIdentity type "AWSService"): (invokedBy, eventSource, eventName).
SERVICE_CALLS = (
    ("ec2.amazonaws.com", "sts.amazonaws.com", "AssumeRole"),
    ("lambda.amazonaws.com", "sts.amazonaws.com", "AssumeRole"),
    ("ecs-tasks.amazonaws.com", "sts.amazonaws.com", "AssumeRole"),
    ("cloudtrail.amazonaws.com", "s3.amazonaws.com", "GetBucketAcl"),
    ("config.amazonaws.com", "s3.amazonaws.com", "GetBucketAcl"),
)
# Events services emit on their own (eventType AwsServiceEvent, userIdentity without "type"): (source, name).
SERVICE_EVENTS = (
    ("kms.amazonaws.com", "RotateKey"),
    ("secretsmanager.amazonaws.com", "RotationSucceeded"),
    ("ec2.amazonaws.com", "SharedSnapshotVolumeCreated"),
)
