"""Who acts in a synthetic account of `trailhouse.generate`: a small, stable cast, so per-principal counts look real.

Per account: each human IAM user on the CLI (long-term AKIA keys), in the console (hourly sessions) and through
SSO (an assumed role named after them); two automation users; CI and Terraform role sessions from a few runner
IPs; an EC2 instance role calling through a VPC endpoint from private IPs; a Lambda role; rarely the root user;
and another account that assumes a role here. Each has a few IPs (some IPv6) and user agents, and humans are
Zipf-weighted so one of them is clearly the busiest.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from trailhouse import generate_catalog as cat

_PUBLIC_FIRST_OCTETS = (3, 18, 34, 35, 52, 54, 81, 86, 91, 93, 104, 145, 178, 185, 188, 193, 203, 212, 217)

Session = Callable[[random.Random, int], dict]  # (rng, creation time) -> userIdentity of a new session


@dataclass(frozen=True, slots=True, eq=False)  # eq=False: hashed by identity, a key of the session cache
class Principal:
    """Someone who calls APIs. `identity` is a fixed userIdentity (long-term keys), or None when every hour brings
    a new session whose userIdentity `session` builds (roles, console and root sessions). `persona` selects the
    API calls it makes (`Action.weights`), `tls` one of `TLS_PROFILES`."""

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
    """The cast and estate of one account, derived from (seed, account index) alone: asking for more accounts or
    events does not change who is in an account. `others` are the ids the cross-account caller must not have."""

    def __init__(self, account: str, index: int, seed: int, others: list[str]) -> None:
        rng = random.Random(f"trailhouse:{seed}:account:{index}")
        e = self.estate = cat.build_estate(rng, account, index)
        self._seed = rng.getrandbits(48)
        self._sessions: dict[tuple[Principal, int], dict] = {}
        self._hour = -1
        self.human_ids = {h: "AIDA" + cat.aws_id(rng, 17) for h in e.humans}
        self.human_ips = {h: tuple(_ip(rng) for _ in range(rng.randint(1, 3))) for h in e.humans}
        self.root = {
            "type": "Root",
            "principalId": account,
            "arn": f"arn:aws:iam::{account}:root",
            "accountId": account,
        }
        cast = self.principals = []
        for rank, human in enumerate(e.humans):
            ips, tls, w = self.human_ips[human], rng.randrange(3), 1 / (rank + 1)
            user = {
                "type": "IAMUser",
                "principalId": self.human_ids[human],
                "arn": f"arn:aws:iam::{account}:user/{human}",
                "accountId": account,
            }
            keys = {**user, "accessKeyId": "AKIA" + cat.aws_id(rng, 16), "userName": human}
            sso = _role_session(rng, account, e.roles[0], f"{human}@example.com", "aws-reserved/sso.amazonaws.com/")
            cast.append(Principal(cat.HUMAN, 8 * w, ips, tuple(rng.sample(cat.CLI_AGENTS, 2)), tls, keys))
            cast.append(Principal(cat.HUMAN, 6 * w, ips, cat.CONSOLE_AGENTS, tls, None, _console(user, human), True))
            cast.append(Principal(cat.HUMAN, 6 * w, ips, cat.CLI_AGENTS[:2], tls, None, sso))
        for name in e.automation:
            keys = {
                "type": "IAMUser",
                "principalId": "AIDA" + cat.aws_id(rng, 17),
                "arn": f"arn:aws:iam::{account}:user/{name}",
                "accountId": account,
                "accessKeyId": "AKIA" + cat.aws_id(rng, 16),
                "userName": name,
            }
            cast.append(Principal(cat.AUTOMATION, 6, (_ip(rng),), cat.AUTOMATION_AGENTS[:2], 0, keys))
        runners = tuple(_ip(rng, v6=False) for _ in range(4))
        for role, session, weight in ((e.roles[3], "GitHubActions", 8), (e.roles[4], "terraform", 3)):
            of_role = _role_session(rng, account, role, session)
            cast.append(Principal(cat.AUTOMATION, weight, runners, cat.AUTOMATION_AGENTS, 1, session=of_role))
        vpce = "vpce-0" + cat.hex_id(rng, 16)
        for instance in e.instances[:3]:
            private = (f"10.0.{rng.randrange(256)}.{rng.randrange(1, 255)}",)
            of_role = _role_session(rng, account, e.roles[1], instance, ec2=True)
            cast.append(Principal(cat.WORKLOAD, 7, private, cat.EC2_AGENTS, 0, session=of_role, vpce=vpce))
        lambda_ips = tuple(_ip(rng, v6=False) for _ in range(5))
        of_role = _role_session(rng, account, e.roles[2], cat.FUNCTIONS[0])
        cast.append(Principal(cat.WORKLOAD, 15, lambda_ips, cat.LAMBDA_AGENTS, 1, session=of_role))
        cast.append(Principal(cat.HUMAN, 0.1, (_ip(rng),), cat.BROWSER_AGENTS, 0, None, _console(self.root), True))
        partner = account  # one of `others`: draw until it is not
        while partner in others:
            partner = str(rng.randrange(100_000_000_000, 1_000_000_000_000))
        self.partner = {"type": "AWSAccount", "principalId": "AIDA" + cat.aws_id(rng, 17), "accountId": partner}
        self.partner_ip = _ip(rng, v6=False)

    def identity(self, p: Principal, t: int) -> dict:
        """`p`'s userIdentity at `t`: its fixed one, or its session of that hour. A session is derived from
        (principal, hour) alone, so it is the same in every region and whichever record asks first. Sessions of
        hours before the previous one are forgotten, as generation moves forward in time."""
        if p.identity is not None:
            return p.identity
        hour = t - t % 3600
        identity = self._sessions.get((p, hour))
        if identity is None:
            if hour > self._hour:
                self._hour = hour
                self._sessions = {k: v for k, v in self._sessions.items() if k[1] >= hour - 3600}
            rng = random.Random((self._seed * 1_000_003 + self.principals.index(p)) * 1_000_003 + hour)
            identity = self._sessions[(p, hour)] = p.session(rng, hour - rng.randrange(60, 3000))
        return identity


def _console(base: dict, user: str | None = None) -> Session:
    """A console session of an IAM user or root: temporary keys, an empty session issuer, MFA used."""

    def build(rng: random.Random, created: int) -> dict:
        identity = {**base, "accessKeyId": "ASIA" + cat.aws_id(rng, 16)}
        if user:
            identity["userName"] = user
        attributes = {"creationDate": cat.iso(created), "mfaAuthenticated": "true"}
        identity["sessionContext"] = {"sessionIssuer": {}, "webIdFederationData": {}, "attributes": attributes}
        return identity

    return build


def _role_session(
    rng: random.Random, account: str, role: str, session: str, path: str = "", ec2: bool = False
) -> Session:
    """Sessions of `role` named `session`, as AssumedRole identities; `path` is the role's IAM path."""
    role_id = "AROA" + cat.aws_id(rng, 17)
    issuer = {
        "type": "Role",
        "principalId": role_id,
        "arn": f"arn:aws:iam::{account}:role/{path}{role}",
        "accountId": account,
        "userName": role,
    }

    def build(rng: random.Random, created: int) -> dict:
        attributes = {"creationDate": cat.iso(created), "mfaAuthenticated": "false"}
        context = {"sessionIssuer": issuer, "webIdFederationData": {}, "attributes": attributes}
        if ec2:
            context["ec2RoleDelivery"] = "2.0"
        return {
            "type": "AssumedRole",
            "principalId": f"{role_id}:{session}",
            "arn": f"arn:aws:sts::{account}:assumed-role/{role}/{session}",
            "accountId": account,
            "accessKeyId": "ASIA" + cat.aws_id(rng, 16),
            "sessionContext": context,
        }

    return build


def _ip(rng: random.Random, v6: bool = True) -> str:
    if v6 and rng.random() < 0.15:
        return "2a02:" + ":".join(f"{rng.getrandbits(16):x}" for _ in range(7))
    return f"{rng.choice(_PUBLIC_FIRST_OCTETS)}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
