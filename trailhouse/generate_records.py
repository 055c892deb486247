"""CloudTrail records of one synthetic account in one region, for `trailhouse.generate`.

Each account gets a stable cast (`Population`): its IAM users on the CLI and in the console, SSO and CI role
sessions, an EC2 instance role and a Lambda role, the root user, and another account that assumes a role here, each
with a few IPs and user agents. `Stream.records` then turns event times into records: mostly those principals
calling APIs (`generate_catalog.ACTIONS`, weighted by persona), plus AWS services calling on their own, service
events, console sign-ins and cross-account calls, with about 5% errors.

Records have AWS's key order and only the fields their `eventVersion` has (managementEvent since 1.06,
eventCategory since 1.07, tlsDetails since 1.08...; recipientAccountId since 1.02, so it is always there).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from trailhouse import generate_catalog as cat

ERROR_RATE = 0.05
_SECONDS = tuple(f"{s:02d}Z" for s in range(60))
_PUBLIC_FIRST_OCTETS = (3, 18, 34, 35, 52, 54, 81, 86, 91, 93, 104, 145, 178, 185, 188, 193, 203, 212, 217)
_SERVICE_IDENTITIES = {invoker: {"type": "AWSService", "invokedBy": invoker} for invoker, _, _ in cat.SERVICE_CALLS}

Session = Callable[[random.Random, int], dict]  # (rng, creation time) -> userIdentity of a new session


@dataclass(frozen=True, slots=True, eq=False)  # hashed by identity: a key of the session cache
class Principal:
    """Someone who calls APIs. `identity` is a fixed userIdentity (long-term keys), or None when every hour brings
    a new session whose userIdentity `session` builds (roles, console and root sessions)."""

    persona: int
    weight: float
    ips: tuple[str, ...]
    agents: tuple[str, ...]
    tls: int
    identity: dict | None = None
    session: Session | None = None
    console: bool = False
    vpce: str | None = None


class Population:
    """The cast and estate of one account, derived from (seed, account index) alone: adding accounts or events
    does not change who is in an account."""

    def __init__(self, account: str, index: int, seed: int, taken: list[str]) -> None:
        rng = random.Random(f"trailhouse:{seed}:account:{index}")
        e = self.estate = cat.build_estate(rng, account, index)
        self.seed = rng.getrandbits(48)
        self.human_ids = {h: "AIDA" + cat.aws_id(rng, 17) for h in e.humans}
        self.human_ips = {h: tuple(_ip(rng) for _ in range(rng.randint(1, 3))) for h in e.humans}
        self.root = {"type": "Root", "principalId": account, "arn": f"arn:aws:iam::{account}:root", "accountId": account}
        cast = self.principals = []
        for rank, human in enumerate(e.humans):
            ips, tls, w = self.human_ips[human], rng.randrange(3), 1 / (rank + 1)
            user = {"type": "IAMUser", "principalId": self.human_ids[human], "arn": f"arn:aws:iam::{account}:user/{human}",
                    "accountId": account}  # fmt: skip
            keys = {**user, "accessKeyId": "AKIA" + cat.aws_id(rng, 16), "userName": human}
            sso = _role_session(rng, account, e.roles[0], f"{human}@example.com", "aws-reserved/sso.amazonaws.com/")
            cast.append(Principal(cat.HUMAN, 8 * w, ips, tuple(rng.sample(cat.CLI_AGENTS, 2)), tls, keys))
            cast.append(Principal(cat.HUMAN, 6 * w, ips, cat.CONSOLE_AGENTS, tls, None, _console(user, human), True))
            cast.append(Principal(cat.HUMAN, 6 * w, ips, cat.CLI_AGENTS[:2], tls, None, sso))
        for name in e.automation:
            keys = {"type": "IAMUser", "principalId": "AIDA" + cat.aws_id(rng, 17),
                    "arn": f"arn:aws:iam::{account}:user/{name}", "accountId": account,
                    "accessKeyId": "AKIA" + cat.aws_id(rng, 16), "userName": name}  # fmt: skip
            cast.append(Principal(cat.AUTOMATION, 6, (_ip(rng),), cat.AUTOMATION_AGENTS[:2], 0, keys))
        runners = tuple(_ip(rng, v6=False) for _ in range(4))
        for role, session, weight in ((e.roles[3], "GitHubActions", 8), (e.roles[4], "terraform", 3)):
            session_of = _role_session(rng, account, role, session)
            cast.append(Principal(cat.AUTOMATION, weight, runners, cat.AUTOMATION_AGENTS, 1, session=session_of))
        vpce = "vpce-0" + cat.hex_id(rng, 16)
        for instance in e.instances[:3]:
            private = (f"10.0.{rng.randrange(256)}.{rng.randrange(1, 255)}",)
            session_of = _role_session(rng, account, e.roles[1], instance, ec2=True)
            cast.append(Principal(cat.WORKLOAD, 7, private, cat.EC2_AGENTS, 0, session=session_of, vpce=vpce))
        lambda_ips = tuple(_ip(rng, v6=False) for _ in range(5))
        session_of = _role_session(rng, account, e.roles[2], cat.FUNCTIONS[0])
        cast.append(Principal(cat.WORKLOAD, 15, lambda_ips, cat.LAMBDA_AGENTS, 1, session=session_of))
        cast.append(Principal(cat.HUMAN, 0.1, (_ip(rng),), cat.BROWSER_AGENTS, 0, None, _console(self.root), True))
        partner = account
        while partner in taken:
            partner = str(rng.randrange(100_000_000_000, 1_000_000_000_000))
        self.partner = {"type": "AWSAccount", "principalId": "AIDA" + cat.aws_id(rng, 17), "accountId": partner}
        self.partner_ip = _ip(rng, v6=False)


def _console(base: dict, user: str | None = None) -> Session:
    """A console session of an IAM user or root: temporary keys, an empty session issuer, MFA used."""

    def build(rng: random.Random, created: int) -> dict:
        identity = {**base, "accessKeyId": "ASIA" + cat.aws_id(rng, 16)}
        if user:
            identity["userName"] = user
        attributes = {"creationDate": _iso(created), "mfaAuthenticated": "true"}
        identity["sessionContext"] = {"sessionIssuer": {}, "webIdFederationData": {}, "attributes": attributes}
        return identity

    return build


def _role_session(
    rng: random.Random, account: str, role: str, session: str, path: str = "", ec2: bool = False
) -> Session:
    role_id = "AROA" + cat.aws_id(rng, 17)
    issuer = {"type": "Role", "principalId": role_id, "arn": f"arn:aws:iam::{account}:role/{path}{role}",
              "accountId": account, "userName": role}  # fmt: skip

    def build(rng: random.Random, created: int) -> dict:
        attributes = {"creationDate": _iso(created), "mfaAuthenticated": "false"}
        context = {"sessionIssuer": issuer, "webIdFederationData": {}, "attributes": attributes}
        if ec2:
            context["ec2RoleDelivery"] = "2.0"
        return {"type": "AssumedRole", "principalId": f"{role_id}:{session}",
                "arn": f"arn:aws:sts::{account}:assumed-role/{role}/{session}", "accountId": account,
                "accessKeyId": "ASIA" + cat.aws_id(rng, 16), "sessionContext": context}  # fmt: skip

    return build


def _ip(rng: random.Random, v6: bool = True) -> str:
    if v6 and rng.random() < 0.15:
        return "2a02:" + ":".join(f"{rng.getrandbits(16):x}" for _ in range(7))
    return f"{rng.choice(_PUBLIC_FIRST_OCTETS)}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"


def _iso(t: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def _table(items: Iterable, weight: Callable) -> list:
    """A list where each item appears in proportion to its weight, so a weighted choice is one `random()`."""
    return [item for item in items for _ in range(round(weight(item) * 10))]


class Stream:
    """The records of one account's trail in one region. `is_global` streams also carry the global services'
    events (IAM, sign-in, ...)."""

    def __init__(self, population: Population, region: str, is_global: bool) -> None:
        self.pop, self.estate, self.region, self.is_global = population, population.estate, region, is_global
        self.account = population.estate.account
        actions = [a for a in cat.ACTIONS if is_global or a.source not in cat.GLOBAL_SOURCES]
        self.actions = [_table(actions, lambda a, p=persona: a.weights[p]) for persona in range(3)]
        self.principals = _table(population.principals, lambda p: p.weight)
        self.index = {p: i for i, p in enumerate(population.principals)}
        self.tls: dict[tuple[int, str], dict] = {}
        self.sessions: dict[tuple[Principal, int], dict] = {}
        self.hour = -1

    def records(self, rng: random.Random, times: list[int]) -> list[dict]:
        """One record per event time (epoch seconds, ascending), drawing every choice from `rng`."""
        if times and times[0] - times[0] % 3600 != self.hour:  # keep this and the previous hour's sessions
            self.hour = times[0] - times[0] % 3600
            self.sessions = {k: v for k, v in self.sessions.items() if k[1] >= self.hour - 3600}
        minutes: dict[int, str] = {}
        out = []
        for t in times:
            minute = t - t % 60
            stamp = minutes.get(minute) or minutes.setdefault(minute, _iso(minute)[:17])
            when, r = stamp + _SECONDS[t % 60], rng.random()
            if r < 0.04:
                out.append(self._service_call(rng, t, when))
            elif r < 0.055:
                out.append(self._service_event(rng, when))
            elif r < 0.065 and self.is_global:
                out.append(self._sign_in(rng, when))
            elif r < 0.07:
                out.append(self._partner_call(rng, t, when))
            else:
                out.append(self._api_call(rng, t, when))
        return out

    def _api_call(self, rng: random.Random, t: int, when: str) -> dict:
        p = self.principals[int(rng.random() * len(self.principals))]
        actions = self.actions[p.persona]
        act = actions[int(rng.random() * len(actions))]
        request, response, resources, target = act.build(rng, self.estate, self.region, t)
        identity = p.identity or self._session(p, t)
        tls = vpce = None
        if act.via and rng.random() < 0.4:
            ip = agent = act.via[int(rng.random() * len(act.via))]
            identity = {**identity, "invokedBy": ip}
        elif p.console and rng.random() < 0.15:
            ip = agent = cat.INTERNAL
            identity = {**identity, "invokedBy": ip}
        else:
            ip, agent = p.ips[int(rng.random() * len(p.ips))], p.agents[int(rng.random() * len(p.agents))]
            tls = None if p.console else self._tls(p.tls, act.source)
            vpce = p.vpce
        error = None
        if rng.random() < ERROR_RATE:
            error, response = _error(rng, act, identity["arn"], target), None
        extra, request_id = _s3_extra(rng) if act.source == "s3.amazonaws.com" else (None, cat.uuid(rng))
        return _record(
            _version(rng), identity, when, act.source, act.name, self.region, ip, agent, error, request, response,
            extra, request_id, cat.uuid(rng), act.read_only, resources, "AwsApiCall", self.account,
            vpce=vpce, tls=tls, console=p.console,
        )  # fmt: skip

    def _session(self, p: Principal, t: int) -> dict:
        """The principal's session of this hour, derived from (principal, hour) alone: the same whichever record
        asks first."""
        hour = t - t % 3600
        identity = self.sessions.get((p, hour))
        if identity is None:
            rng = random.Random((self.pop.seed * 1_000_003 + self.index[p]) * 1_000_003 + hour)
            identity = self.sessions[(p, hour)] = p.session(rng, hour - rng.randrange(60, 3000))
        return identity

    def _tls(self, profile: int, source: str) -> dict:
        details = self.tls.get((profile, source))
        if details is None:
            version, cipher, exchange = cat.TLS_PROFILES[profile]
            host = cat.tls_host(source, self.region)
            details = {"tlsVersion": version, "cipherSuite": cipher, "clientProvidedHostHeader": host}
            if exchange:
                details["keyExchange"] = exchange
            self.tls[(profile, source)] = details
        return details

    def _service_call(self, rng: random.Random, t: int, when: str) -> dict:
        invoker, source, name = cat.SERVICE_CALLS[int(rng.random() * len(cat.SERVICE_CALLS))]
        e = self.estate
        if name == "AssumeRole":
            if invoker == "lambda.amazonaws.com":
                role, session = e.roles[2], cat.FUNCTIONS[0]
            else:
                role, session = e.roles[1], rng.choice(e.instances)
            request, response, resources, _ = cat.assume_role(rng, e, self.region, t, role, session)
            extra, request_id = None, cat.uuid(rng)
        else:
            request, response, resources, _ = cat.bucket_call(e, e.buckets[0], self.region, "acl")
            extra, request_id = _s3_extra(rng)
        return _record(
            _version(rng), _SERVICE_IDENTITIES[invoker], when, source, name, self.region, invoker, invoker, None,
            request, response, extra, request_id, cat.uuid(rng), True, resources, "AwsApiCall", self.account,
            shared=cat.uuid(rng),
        )  # fmt: skip

    def _service_event(self, rng: random.Random, when: str) -> dict:
        source, name = cat.SERVICE_EVENTS[int(rng.random() * len(cat.SERVICE_EVENTS))]
        e, extra, resources, details, shared = self.estate, None, None, None, None
        if source == "kms.amazonaws.com":
            arn = f"arn:aws:kms:{self.region}:{self.account}:key/{rng.choice(e.keys)}"
            extra, resources = {"keyId": arn}, [{"accountId": self.account, "type": "AWS::KMS::Key", "ARN": arn}]
        elif source == "secretsmanager.amazonaws.com":
            extra = {"SecretId": f"arn:aws:secretsmanager:{self.region}:{self.account}:secret:{e.secrets[0]}"}
        else:
            details, shared = {"snapshotId": "snap-0" + cat.hex_id(rng, 16)}, cat.uuid(rng)
        return _record(
            _version(rng), {"accountId": self.account, "invokedBy": source}, when, source, name, self.region,
            source, source, None, None, None, extra, None, cat.uuid(rng), False, resources, "AwsServiceEvent",
            self.account, shared=shared, details=details,
        )  # fmt: skip

    def _sign_in(self, rng: random.Random, when: str) -> dict:
        """ConsoleLogin: mostly IAM users, some root; failures name the user, or hide a name that does not exist."""
        e, r = self.estate, rng.random()
        human = e.humans[min(int(rng.expovariate(1.0)), len(e.humans) - 1)]
        if r < 0.03:
            identity = {**self.pop.root, "accessKeyId": ""}
        elif r < 0.9:
            identity = {"type": "IAMUser", "principalId": self.pop.human_ids[human],
                        "arn": f"arn:aws:iam::{self.account}:user/{human}", "accountId": self.account,
                        "userName": human}  # fmt: skip
        elif r < 0.97:
            identity = {"type": "IAMUser", "principalId": self.pop.human_ids[human], "accountId": self.account,
                        "accessKeyId": "", "userName": human}  # fmt: skip
        else:
            identity = {"type": "IAMUser", "accountId": self.account, "accessKeyId": "",
                        "userName": "HIDDEN_DUE_TO_SECURITY_REASONS"}  # fmt: skip
        ok = r < 0.9
        login = ("https://console.aws.amazon.com/console/home?hashArgs=%23&isauthcode=true&state=hashArgsFromTB_"
                 f"{self.region}_{cat.hex_id(rng, 16)}")  # fmt: skip
        extra = {"LoginTo": login, "MobileVersion": "No", "MFAUsed": "Yes" if ok and rng.random() < 0.7 else "No"}
        return _record(
            _version(rng), identity, when, "signin.amazonaws.com", "ConsoleLogin", self.region,
            rng.choice(self.pop.human_ips[human]), rng.choice(cat.BROWSER_AGENTS),
            None if ok else (None, "Failed authentication"), None, {"ConsoleLogin": "Success" if ok else "Failure"},
            extra, None, cat.uuid(rng), False, None, "AwsConsoleSignIn", self.account,
            tls=self._tls(0, "signin.amazonaws.com"),
        )  # fmt: skip

    def _partner_call(self, rng: random.Random, t: int, when: str) -> dict:
        """Another account assuming a role here: the record names only the caller's account and principal id."""
        e = self.estate
        request, response, resources, _ = cat.assume_role(rng, e, self.region, t, e.roles[4], "cross-account-audit")
        return _record(
            _version(rng), self.pop.partner, when, "sts.amazonaws.com", "AssumeRole", self.region,
            self.pop.partner_ip, cat.AUTOMATION_AGENTS[1], None, request, response, None, cat.uuid(rng),
            cat.uuid(rng), True, resources, "AwsApiCall", self.account, shared=cat.uuid(rng),
            tls=self._tls(0, "sts.amazonaws.com"),
        )  # fmt: skip


def _error(rng: random.Random, act: cat.Action, caller: str, target: str) -> tuple[str, str | None]:
    r = rng.random()
    if act.not_found and r < 0.3:
        code, message = act.not_found
        name = target.removesuffix("/*").rsplit("/", 1)[-1].rsplit(":", 1)[-1]
        return code, message and message.format(name=name, arn=target)
    if r < 0.5:
        return cat.throttled(act.source)
    return cat.access_denied(act.source, act.name, caller, target, "".join(rng.choices(cat.ALNUM + "-_", k=96)))


def _version(rng: random.Random) -> str:
    """Mostly 1.08 and 1.09; 2% older records (1.05, 1.02) for parsers that must not assume the newest shape."""
    r = rng.random()
    return "1.08" if r > 0.4 else "1.09" if r > 0.02 else "1.05" if r > 0.01 else "1.02"


def _s3_extra(rng: random.Random) -> tuple[dict, str]:
    """additionalEventData and requestID of an S3 call (S3 request ids are 16 characters, not UUIDs)."""
    extra = {"SignatureVersion": "SigV4", "CipherSuite": "TLS_AES_128_GCM_SHA256", "bytesTransferredIn": 0,
             "AuthenticationMethod": "AuthHeader", "x-amz-id-2": cat.aws_id(rng, 20) + cat.hex_id(rng, 40),
             "bytesTransferredOut": rng.randint(200, 9000)}  # fmt: skip
    return extra, cat.aws_id(rng, 16)


def _record(
    version: str, identity: dict, when: str, source: str, name: str, region: str, ip: str, agent: str,
    error: tuple[str | None, str | None] | None, request: dict | None, response: dict | None, extra: dict | None,
    request_id: str | None, event_id: str, read_only: bool, resources: list | None, event_type: str, account: str,
    shared: str | None = None, vpce: str | None = None, details: dict | None = None, tls: dict | None = None,
    console: bool = False,
) -> dict:  # fmt: skip
    record = {"eventVersion": version, "userIdentity": identity, "eventTime": when, "eventSource": source,
              "eventName": name, "awsRegion": region, "sourceIPAddress": ip, "userAgent": agent}  # fmt: skip
    if error:
        if error[0]:
            record["errorCode"] = error[0]
        if error[1]:
            record["errorMessage"] = error[1]
    record["requestParameters"] = request
    record["responseElements"] = response
    if extra:
        record["additionalEventData"] = extra
    if request_id:
        record["requestID"] = request_id
    record["eventID"] = event_id
    record["readOnly"] = read_only
    if resources:
        record["resources"] = resources
    record["eventType"] = event_type
    if version >= "1.06":
        record["managementEvent"] = True
    record["recipientAccountId"] = account
    if shared and version >= "1.03":
        record["sharedEventID"] = shared
    if vpce and version >= "1.04":
        record["vpcEndpointId"] = vpce
        if version >= "1.09":
            record["vpcEndpointAccountId"] = account
    if details and version >= "1.05":
        record["serviceEventDetails"] = details
    if version >= "1.07":
        record["eventCategory"] = "Management"
    if version >= "1.08":
        if tls:
            record["tlsDetails"] = tls
        if console:
            record["sessionCredentialFromConsole"] = "true"
    return record
