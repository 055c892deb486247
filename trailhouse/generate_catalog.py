"""The vocabulary of the synthetic accounts of `trailhouse.generate`: names, user agents, TLS settings, the
resources of one account (`Estate`) and the id and time formats AWS uses.

Data more than logic. Values are made up; their shapes follow real CloudTrail records.
"""

from __future__ import annotations

import base64
import random
import time
from dataclasses import dataclass

HUMAN, AUTOMATION, WORKLOAD = 0, 1, 2  # personas: index into `generate_actions.Action.weights`

# Services whose events CloudTrail records in us-east-1 only.
GLOBAL_SOURCES = frozenset(
    {"iam.amazonaws.com", "signin.amazonaws.com", "organizations.amazonaws.com", "route53.amazonaws.com"}
)

ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
HEX = "0123456789abcdef"
INTERNAL = "AWS Internal"

HUMAN_NAMES = (
    "alice", "bob", "carol.nguyen", "dmitri", "erin", "fatima.k", "gustavo", "hiro", "ines", "jakob", "kwame",
    "lena", "mateo", "nadia", "oscar", "priya",
)  # fmt: skip
AUTOMATION_USERS = ("terraform-ci", "github-deployer", "backup-agent", "datadog-integration")
ACCOUNT_ALIASES = ("acme-prod", "acme-staging", "acme-dev", "acme-security", "acme-shared", "acme-sandbox")
FUNCTIONS = ("orders-api", "thumbnail-resizer", "nightly-report", "slack-notifier")

CLI_AGENTS = (
    "aws-cli/2.15.30 md/awscrt#0.19.19 ua/2.0 os/macos#23.4.0 md/arch#arm64 lang/python#3.11.8 md/pyimpl#CPython"
    " cfg/retry-mode#standard md/installer#exe md/prompt#off",
    "aws-cli/2.13.25 Python/3.11.5 Linux/6.5.0-1014-aws exe/x86_64.ubuntu.22 prompt/off",
    "aws-cli/2.17.4 md/awscrt#0.20.11 ua/2.0 os/windows#10 md/arch#amd64 lang/python#3.11.8 md/pyimpl#CPython"
    " cfg/retry-mode#standard md/installer#exe md/prompt#off",
    "Boto3/1.34.69 md/Botocore#1.34.69 ua/2.0 os/linux#6.5.0-1016-aws md/arch#x86_64 lang/python#3.11.6"
    " md/pyimpl#CPython cfg/retry-mode#legacy Botocore/1.34.69",
    "AWSPowerShell.Common/4.1.532.0 .NET_Core/6.0.28 OS/Microsoft_Windows_10.0.22631 PowerShellCore/7.4 ClientSync",
)
BROWSER_AGENTS = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0"
    " Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0"
    " Safari/537.36 Edg/124.0.2478.67",
)
CONSOLE_AGENTS = BROWSER_AGENTS + (
    "[S3Console/0.4, aws-internal/3 aws-sdk-java/1.12.488 Linux/5.10.184-153.731.amzn2int.x86_64"
    " OpenJDK_64-Bit_Server_VM/25.372-b08 java/1.8.0_372 vendor/Oracle_Corporation cfg/retry-mode/standard]",
    INTERNAL,
)
AUTOMATION_AGENTS = (
    "APN/1.0 HashiCorp/1.0 Terraform/1.7.5 (+https://www.terraform.io) terraform-provider-aws/5.43.0"
    " (+https://registry.terraform.io/providers/hashicorp/aws) aws-sdk-go-v2/1.26.0 os/linux lang/go#1.21.8"
    " md/GOOS#linux md/GOARCH#amd64 api/ec2#1.152.0",
    "aws-sdk-go-v2/1.26.1 os/linux lang/go#1.22.1 md/GOOS#linux md/GOARCH#amd64 api/sts#1.28.6",
    "aws-cli/2.15.30 md/awscrt#0.19.19 ua/2.0 os/linux#6.5.0-1017-azure md/arch#x86_64 lang/python#3.11.8"
    " md/pyimpl#CPython exec-env/github-actions cfg/retry-mode#standard md/installer#exe md/prompt#off",
    "aws-sdk-java/2.25.16 Linux/5.10.210-201.852.amzn2.x86_64 OpenJDK_64-Bit_Server_VM/17.0.10+7-LTS Java/17.0.10"
    " vendor/Amazon.com_Inc. md/internal exec-env/AWS_ECS_FARGATE io/sync http/Apache cfg/retry-mode/legacy",
)
EC2_AGENTS = (
    "aws-sdk-go/1.44.302 (go1.20.6; linux; amd64) amazon-ssm-agent/3.2.1297.0",
    "aws-sdk-java/1.12.671 Linux/5.10.213-201.855.amzn2.x86_64 OpenJDK_64-Bit_Server_VM/17.0.10+7-LTS java/17.0.10"
    " vendor/Amazon.com_Inc. cfg/retry-mode/standard",
)
LAMBDA_AGENTS = (
    "Boto3/1.34.42 md/Botocore#1.34.42 ua/2.0 os/linux#5.10.213-222.836.amzn2.x86_64 md/arch#x86_64"
    " lang/python#3.12.2 md/pyimpl#CPython exec-env/AWS_Lambda_python3.12 cfg/retry-mode#legacy Botocore/1.34.42",
    "aws-sdk-nodejs/2.1550.0 linux/v20.11.1 exec-env/AWS_Lambda_nodejs20.x promise",
)

# (tlsVersion, cipherSuite, keyExchange or None)
TLS_PROFILES = (
    ("TLSv1.3", "TLS_AES_128_GCM_SHA256", "x25519"),
    ("TLSv1.3", "TLS_AES_128_GCM_SHA256", None),
    ("TLSv1.2", "ECDHE-RSA-AES128-GCM-SHA256", None),
)


def tls_host(source: str, region: str) -> str:
    """The endpoint a client names in TLS (`clientProvidedHostHeader`) when calling `source` in `region`."""
    service = source.split(".", 1)[0]
    if source in GLOBAL_SOURCES:
        return "signin.aws.amazon.com" if service == "signin" else source
    return f"{'api.ecr' if service == 'ecr' else service}.{region}.amazonaws.com"


@dataclass(frozen=True, slots=True)
class Estate:
    """The users, roles and resources of one synthetic account: few and stable, so per-name counts look real.
    `roles` are, in order: the SSO admin role, the EC2 instance role, the Lambda role, the CI role, the role other
    accounts assume."""

    account: str
    humans: tuple[str, ...]
    automation: tuple[str, ...]
    roles: tuple[str, ...]
    buckets: tuple[str, ...]
    instances: tuple[str, ...]
    security_groups: tuple[str, ...]
    keys: tuple[str, ...]
    secrets: tuple[str, ...]


def build_estate(rng: random.Random, account: str, index: int) -> Estate:
    alias = ACCOUNT_ALIASES[index % len(ACCOUNT_ALIASES)] + (f"-{index}" if index >= len(ACCOUNT_ALIASES) else "")
    return Estate(
        account=account,
        humans=tuple(rng.sample(HUMAN_NAMES, rng.randint(3, 5))),
        automation=tuple(rng.sample(AUTOMATION_USERS, 2)),
        roles=(
            "AWSReservedSSO_AdministratorAccess_" + hex_id(rng, 16),
            "app-instance-role",
            "orders-lambda-exec",
            "github-actions-deploy",
            "OrganizationAccountAccessRole",
        ),
        buckets=tuple(f"{alias}-{s}" for s in ("cloudtrail-logs", "data-lake-raw", "tfstate", "static-site")),
        instances=tuple("i-0" + hex_id(rng, 16) for _ in range(rng.randint(4, 9))),
        security_groups=tuple("sg-0" + hex_id(rng, 16) for _ in range(3)),
        keys=tuple(uuid(rng) for _ in range(3)),
        secrets=tuple(f"{n}-{''.join(rng.choices(ALNUM, k=6))}" for n in ("prod/db/postgres", "prod/api/stripe")),
    )


_UUID_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in HEX}
# Folds base64's 64 symbols onto the 32 of AWS ids (A-Z, 2-7), two to one: uniform, and done in C.
_TO_BASE32 = bytes.maketrans(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567" * 2
)


def uuid(rng: random.Random) -> str:
    """A version-4 UUID from the seeded generator (uuid.uuid4 reads os.urandom: neither repeatable nor fast)."""
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_UUID_VARIANT[h[16]]}{h[17:20]}-{h[20:]}"


def hex_id(rng: random.Random, length: int) -> str:
    return f"{rng.getrandbits(4 * length):0{length}x}"


def aws_id(rng: random.Random, length: int) -> str:
    """Up to 20 random characters of the alphabet of AWS key ids, principal ids and S3 request ids."""
    return base64.b64encode(rng.randbytes(15)).translate(_TO_BASE32)[:length].decode()


def iso(t: int) -> str:
    """Epoch seconds as CloudTrail writes times: "2026-11-24T09:03:11Z"."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def aws_date(t: int, comma: bool = True) -> str:
    """Dates as AWS's Java services write them into responseElements: "Nov 4, 2026, 9:03:11 AM"."""
    g = time.gmtime(t)
    hour = g.tm_hour % 12 or 12
    return (
        f"{time.strftime('%b', g)} {g.tm_mday}, {g.tm_year}{',' if comma else ''} {hour}:{g.tm_min:02d}:"
        f"{g.tm_sec:02d} {'AM' if g.tm_hour < 12 else 'PM'}"
    )
