"""CloudTrail records of one synthetic account in one region, for `trailhouse.generate`.

`Stream.records` turns event times into records. About 93% are the account's principals (`generate_population`)
calling APIs (`generate_actions.ACTIONS`, weighted by persona): through their own client with TLS details, in the
console, or through a service acting for them (`invokedBy`). The rest are AWS services calling on their own
(`AWSService`), service events (a userIdentity without `type`), console sign-ins (in the region of the global
services only) and another account assuming a role here (`AWSAccount`). About 5% of API calls fail: access
denied, throttled, or a missing resource.

Records have AWS's key order and only the fields their `eventVersion` has: managementEvent since 1.06,
eventCategory since 1.07, tlsDetails since 1.08, and recipientAccountId since 1.02, so it is always there.
"""

from __future__ import annotations

import base64
import random
from collections.abc import Callable, Iterable

from trailhouse import generate_actions as api
from trailhouse import generate_catalog as cat
from trailhouse.generate_population import Population

ERROR_RATE = 0.05
_SECONDS = tuple(f"{s:02d}Z" for s in range(60))
_SERVICE_IDENTITIES = {invoker: {"type": "AWSService", "invokedBy": invoker} for invoker, _, _ in api.SERVICE_CALLS}


def _table(items: Iterable, weight: Callable) -> list:
    """A list where each item appears in proportion to its weight, so a weighted choice is one `random()`."""
    return [item for item in items for _ in range(round(weight(item) * 10))]


class Stream:
    """The records of one account's trail in one region. The `is_global` stream of an account also carries the
    global services' events (IAM, sign-in, ...)."""

    def __init__(self, population: Population, region: str, is_global: bool) -> None:
        self.pop, self.estate, self.region, self.is_global = population, population.estate, region, is_global
        self.account = population.estate.account
        actions = [a for a in api.ACTIONS if is_global or a.source not in cat.GLOBAL_SOURCES]
        self._actions = [_table(actions, lambda a, p=persona: a.weights[p]) for persona in range(3)]
        self._principals = _table(population.principals, lambda p: p.weight)
        self._tls: dict[tuple[int, str], dict] = {}

    def records(self, rng: random.Random, times: list[int]) -> list[dict]:
        """One record per event time (epoch seconds, ascending), every choice drawn from `rng`."""
        minutes: dict[int, str] = {}
        out = []
        for t in times:
            minute = t - t % 60
            stamp = minutes.get(minute) or minutes.setdefault(minute, cat.iso(minute)[:17])
            when, r = stamp + _SECONDS[t % 60], rng.random()
            if r < 0.04:
                out.append(self._service_call(rng, t, when))
            elif r < 0.055:
                out.append(self._service_event(rng, when))
            elif r < 0.065 and self.is_global:
                out.append(self._sign_in(rng, when))
            elif 0.065 <= r < 0.07:
                out.append(self._partner_call(rng, t, when))
            else:
                out.append(self._api_call(rng, t, when))
        return out

    def _api_call(self, rng: random.Random, t: int, when: str) -> dict:
        p = self._principals[int(rng.random() * len(self._principals))]
        actions = self._actions[p.persona]
        act = actions[int(rng.random() * len(actions))]
        request, response, resources, target = act.build(rng, self.estate, self.region, t)
        identity = self.pop.identity(p, t)
        tls = vpce = None
        if act.via and rng.random() < 0.4:
            ip = agent = act.via[int(rng.random() * len(act.via))]
            identity = {**identity, "invokedBy": ip}
        elif p.console and rng.random() < 0.15:
            ip = agent = cat.INTERNAL
            identity = {**identity, "invokedBy": ip}
        else:
            ip, agent = p.ips[int(rng.random() * len(p.ips))], p.agents[int(rng.random() * len(p.agents))]
            tls = None if p.console else self._tls_details(p.tls, act.source)
            vpce = p.vpce
        error = None
        if rng.random() < ERROR_RATE:
            error, response = _error(rng, act, identity["arn"], target), None
        extra, request_id = _s3_extra(rng) if act.source == "s3.amazonaws.com" else (None, cat.uuid(rng))
        return self._record(
            rng, identity, when, act.source, act.name, ip, agent,
            error=error, request=request, response=response, extra=extra, request_id=request_id,
            read_only=act.read_only, resources=resources, vpce=vpce, tls=tls, console=p.console,
        )  # fmt: skip

    def _tls_details(self, profile: int, source: str) -> dict:
        details = self._tls.get((profile, source))
        if details is None:
            version, cipher, exchange = cat.TLS_PROFILES[profile]
            host = cat.tls_host(source, self.region)
            details = {"tlsVersion": version, "cipherSuite": cipher, "clientProvidedHostHeader": host}
            if exchange:
                details["keyExchange"] = exchange
            self._tls[(profile, source)] = details
        return details

    def _service_call(self, rng: random.Random, t: int, when: str) -> dict:
        """A service acting in the account by itself: assuming a workload's role, or checking the trail bucket."""
        invoker, source, name = api.SERVICE_CALLS[int(rng.random() * len(api.SERVICE_CALLS))]
        e = self.estate
        if name == "AssumeRole":
            if invoker == "lambda.amazonaws.com":
                role, session = e.roles[2], cat.FUNCTIONS[0]
            else:
                role, session = e.roles[1], rng.choice(e.instances)
            request, response, resources, _ = api.assume_role(rng, e, self.region, t, role, session)
            extra, request_id = None, cat.uuid(rng)
        else:
            request, response, resources, _ = api.bucket_call(e, e.buckets[0], self.region, "acl")
            extra, request_id = _s3_extra(rng)
        return self._record(
            rng, _SERVICE_IDENTITIES[invoker], when, source, name, invoker, invoker,
            request=request, response=response, extra=extra, request_id=request_id, resources=resources,
            shared=cat.uuid(rng),
        )  # fmt: skip

    def _service_event(self, rng: random.Random, when: str) -> dict:
        source, name = api.SERVICE_EVENTS[int(rng.random() * len(api.SERVICE_EVENTS))]
        e, extra, resources, details, shared = self.estate, None, None, None, None
        if source == "kms.amazonaws.com":
            arn = f"arn:aws:kms:{self.region}:{self.account}:key/{rng.choice(e.keys)}"
            extra, resources = {"keyId": arn}, [{"accountId": self.account, "type": "AWS::KMS::Key", "ARN": arn}]
        elif source == "secretsmanager.amazonaws.com":
            extra = {"SecretId": f"arn:aws:secretsmanager:{self.region}:{self.account}:secret:{e.secrets[0]}"}
        else:
            details, shared = {"snapshotId": "snap-0" + cat.hex_id(rng, 16)}, cat.uuid(rng)
        return self._record(
            rng, {"accountId": self.account, "invokedBy": source}, when, source, name, source, source,
            extra=extra, read_only=False, resources=resources, event_type="AwsServiceEvent", shared=shared,
            details=details,
        )  # fmt: skip

    def _sign_in(self, rng: random.Random, when: str) -> dict:
        """ConsoleLogin: mostly IAM users, some root; failures name the user, or hide a name that does not exist."""
        pop, r = self.pop, rng.random()
        human = self.estate.humans[min(int(rng.expovariate(1.0)), len(self.estate.humans) - 1)]
        if r < 0.03:
            identity = {**pop.root, "accessKeyId": ""}
        elif r < 0.9:
            identity = {
                "type": "IAMUser",
                "principalId": pop.human_ids[human],
                "arn": f"arn:aws:iam::{self.account}:user/{human}",
                "accountId": self.account,
                "userName": human,
            }
        elif r < 0.97:
            identity = {
                "type": "IAMUser",
                "principalId": pop.human_ids[human],
                "accountId": self.account,
                "accessKeyId": "",
                "userName": human,
            }
        else:
            identity = {
                "type": "IAMUser",
                "accountId": self.account,
                "accessKeyId": "",
                "userName": "HIDDEN_DUE_TO_SECURITY_REASONS",
            }
        ok = r < 0.9
        state = f"hashArgsFromTB_{self.region}_{cat.hex_id(rng, 16)}"
        login = f"https://console.aws.amazon.com/console/home?hashArgs=%23&isauthcode=true&state={state}"
        extra = {"LoginTo": login, "MobileVersion": "No", "MFAUsed": "Yes" if ok and rng.random() < 0.7 else "No"}
        return self._record(
            rng, identity, when, "signin.amazonaws.com", "ConsoleLogin",
            rng.choice(pop.human_ips[human]), rng.choice(cat.BROWSER_AGENTS),
            error=None if ok else (None, "Failed authentication"),
            response={"ConsoleLogin": "Success" if ok else "Failure"},
            extra=extra, read_only=False, event_type="AwsConsoleSignIn",
            tls=self._tls_details(0, "signin.amazonaws.com"),
        )  # fmt: skip

    def _partner_call(self, rng: random.Random, t: int, when: str) -> dict:
        """Another account assuming a role here: the record names only the caller's account and principal id."""
        e, pop = self.estate, self.pop
        request, response, resources, _ = api.assume_role(rng, e, self.region, t, e.roles[4], "cross-account-audit")
        return self._record(
            rng, pop.partner, when, "sts.amazonaws.com", "AssumeRole", pop.partner_ip, cat.AUTOMATION_AGENTS[1],
            request=request, response=response, request_id=cat.uuid(rng), resources=resources,
            shared=cat.uuid(rng), tls=self._tls_details(0, "sts.amazonaws.com"),
        )  # fmt: skip

    def _record(
        self, rng: random.Random, identity: dict, when: str, source: str, name: str, ip: str, agent: str, *,
        error: tuple[str | None, str | None] | None = None, request: dict | None = None,
        response: dict | None = None, extra: dict | None = None, request_id: str | None = None,
        read_only: bool = True, resources: list | None = None, event_type: str = "AwsApiCall",
        shared: str | None = None, vpce: str | None = None, details: dict | None = None,
        tls: dict | None = None, console: bool = False,
    ) -> dict:  # fmt: skip
        """The record in AWS's key order, with an eventVersion drawn from `rng` and the fields that version has."""
        r = rng.random()
        version = "1.08" if r > 0.4 else "1.09" if r > 0.02 else "1.05" if r > 0.01 else "1.02"
        record = {
            "eventVersion": version,
            "userIdentity": identity,
            "eventTime": when,
            "eventSource": source,
            "eventName": name,
            "awsRegion": self.region,
            "sourceIPAddress": ip,
            "userAgent": agent,
        }
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
        record["eventID"] = cat.uuid(rng)
        record["readOnly"] = read_only
        if resources:
            record["resources"] = resources
        record["eventType"] = event_type
        if version >= "1.06":
            record["managementEvent"] = True
        record["recipientAccountId"] = self.account
        if shared and version >= "1.03":
            record["sharedEventID"] = shared
        if vpce and version >= "1.04":
            record["vpcEndpointId"] = vpce
            if version >= "1.09":
                record["vpcEndpointAccountId"] = self.account
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


def _error(rng: random.Random, act: api.Action, caller: str, target: str) -> tuple[str, str | None]:
    r = rng.random()
    if act.not_found and r < 0.3:
        code, message = act.not_found
        name = target.removesuffix("/*").rsplit("/", 1)[-1].rsplit(":", 1)[-1]
        return code, message and message.format(name=name, arn=target)
    if r < 0.5:
        return api.throttled(act.source)
    return api.access_denied(act.source, act.name, caller, target, "".join(rng.choices(cat.ALNUM + "-_", k=96)))


def _s3_extra(rng: random.Random) -> tuple[dict, str]:
    """additionalEventData and requestID of an S3 call (S3 request ids are 16 characters, not UUIDs)."""
    extra = {
        "SignatureVersion": "SigV4",
        "CipherSuite": "TLS_AES_128_GCM_SHA256",
        "bytesTransferredIn": 0,
        "AuthenticationMethod": "AuthHeader",
        "x-amz-id-2": base64.b64encode(rng.randbytes(57)).decode(),
        "bytesTransferredOut": rng.randint(200, 9000),
    }
    return extra, cat.aws_id(rng, 16)
