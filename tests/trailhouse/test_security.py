"""One security surface, two Kafka clients: each mode gives the right librdkafka and Faust/aiokafka options."""

import datetime
import ssl
from pathlib import Path

import faust
import pytest
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

from trailhouse.config import Settings, load_settings
from trailhouse.errors import ConfigError
from trailhouse.kafka import client_options
from trailhouse.security import faust_options, kafka_security, librdkafka_options, msk_region

MSK = "b-1.logs.ab12cd.c2.kafka.eu-west-1.amazonaws.com:9098,b-2.logs.ab12cd.c2.kafka.eu-west-1.amazonaws.com:9098"


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory) -> dict[str, Path]:
    """A CA, and a client certificate + key it signed, as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    folder = tmp_path_factory.mktemp("tls")
    now = datetime.datetime.now(datetime.UTC)

    def certificate(subject: str, key, issuer: str, issuer_key, ca: bool) -> x509.Certificate:
        return (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .sign(issuer_key, hashes.SHA256())
        )

    ca_key, client_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    files = {"ca": folder / "ca.pem", "cert": folder / "client.pem", "key": folder / "client.key"}
    files["ca"].write_bytes(
        certificate("test CA", ca_key, "test CA", ca_key, True).public_bytes(serialization.Encoding.PEM)
    )
    files["cert"].write_bytes(
        certificate("trailhouse", client_key, "test CA", ca_key, False).public_bytes(serialization.Encoding.PEM)
    )
    files["key"].write_bytes(
        client_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"key-secret"),
        )
    )
    return files


def aiokafka_auth(settings: Settings) -> dict:
    """What Faust finally hands to aiokafka's producer, consumer and admin client."""
    options = faust_options(kafka_security(settings))
    return dict(credentials_to_aiokafka_auth(options.get("broker_credentials")))


def test_plaintext_is_the_default_and_adds_nothing_but_the_protocol():
    settings = Settings(kafka_bootstrap="k:9092")
    assert librdkafka_options(kafka_security(settings)) == {"security.protocol": "PLAINTEXT"}
    assert faust_options(kafka_security(settings)) == {}
    assert aiokafka_auth(settings) == {"security_protocol": "PLAINTEXT"}


def test_tls_with_a_ca_and_a_client_certificate(tls_files):
    settings = Settings(
        kafka_bootstrap="k:9093",
        kafka_security_protocol="ssl",
        kafka_ssl_ca_file=tls_files["ca"],
        kafka_ssl_cert_file=tls_files["cert"],
        kafka_ssl_key_file=tls_files["key"],
        kafka_ssl_key_password="key-secret",
    )
    assert librdkafka_options(kafka_security(settings)) == {
        "security.protocol": "SSL",
        "ssl.ca.location": str(tls_files["ca"]),
        "ssl.endpoint.identification.algorithm": "https",
        "ssl.certificate.location": str(tls_files["cert"]),
        "ssl.key.location": str(tls_files["key"]),
        "ssl.key.password": "key-secret",
    }
    auth = aiokafka_auth(settings)
    assert auth["security_protocol"] == "SSL"
    context: ssl.SSLContext = auth["ssl_context"]
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert [c["subject"] for c in context.get_ca_certs()] == [((("commonName", "test CA"),),)]


def test_tls_without_a_ca_file_trusts_the_system_cas_in_both_clients():
    settings = Settings(kafka_bootstrap="k:9093", kafka_security_protocol="SSL", kafka_ssl_check_hostname=False)
    options = librdkafka_options(kafka_security(settings))
    assert options["ssl.ca.location"] == "probe"
    assert options["ssl.endpoint.identification.algorithm"] == "none"
    context = aiokafka_auth(settings)["ssl_context"]
    assert context.verify_mode == ssl.CERT_REQUIRED and not context.check_hostname


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_over_tls_with_user_and_password(mechanism):
    settings = Settings(
        kafka_bootstrap="k:9096",
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism=mechanism.lower(),
        kafka_sasl_username="trailhouse",
        kafka_sasl_password="pw",
    )
    assert librdkafka_options(kafka_security(settings)) == {
        "security.protocol": "SASL_SSL",
        "ssl.ca.location": "probe",
        "ssl.endpoint.identification.algorithm": "https",
        "sasl.mechanism": mechanism,
        "sasl.username": "trailhouse",
        "sasl.password": "pw",
    }
    auth = aiokafka_auth(settings)
    assert {k: v for k, v in auth.items() if k != "ssl_context"} == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": mechanism,
        "sasl_plain_username": "trailhouse",
        "sasl_plain_password": "pw",
    }
    assert isinstance(auth["ssl_context"], ssl.SSLContext)


def test_sasl_without_tls_on_a_trusted_network():
    settings = Settings(
        kafka_bootstrap="k:9092",
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="u",
        kafka_sasl_password="p",
    )
    assert "ssl.ca.location" not in librdkafka_options(kafka_security(settings))
    auth = aiokafka_auth(settings)
    assert auth["security_protocol"] == "SASL_PLAINTEXT" and auth["ssl_context"] is None
    assert auth["sasl_mechanism"] == "SCRAM-SHA-512"


def test_aws_msk_iam_signs_oauthbearer_tokens_for_both_clients(monkeypatch):
    from aws_msk_iam_sasl_signer import MSKAuthTokenProvider

    regions = []

    def fake_token(region):
        regions.append(region)
        return f"token-for-{region}", 1_900_000_000_000

    monkeypatch.setattr(MSKAuthTokenProvider, "generate_auth_token", fake_token)
    settings = Settings(kafka_bootstrap=MSK, kafka_security_protocol="SASL_SSL", kafka_sasl_mechanism="AWS_MSK_IAM")
    options = librdkafka_options(kafka_security(settings))
    assert options["security.protocol"] == "SASL_SSL" and options["sasl.mechanism"] == "OAUTHBEARER"
    assert "sasl.username" not in options
    assert options["oauth_cb"]("") == ("token-for-eu-west-1", 1_900_000_000.0)  # librdkafka wants seconds

    auth = aiokafka_auth(settings)
    assert auth["security_protocol"] == "SASL_SSL" and auth["sasl_mechanism"] == "OAUTHBEARER"
    assert isinstance(auth["ssl_context"], ssl.SSLContext)
    import asyncio

    assert asyncio.run(auth["sasl_oauth_token_provider"].token()) == "token-for-eu-west-1"
    assert regions == ["eu-west-1", "eu-west-1"]


def test_the_msk_region_comes_from_the_setting_or_the_bootstrap_host():
    assert msk_region(MSK) == "eu-west-1"
    assert msk_region("boot-abc.c1.kafka-serverless.us-gov-west-1.amazonaws.com:9098") == "us-gov-west-1"
    assert msk_region("kafka.internal:9092") is None
    settings = Settings(
        kafka_bootstrap="my-proxy:9098",
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="AWS_MSK_IAM",
        kafka_aws_region="ap-south-1",
    )
    assert kafka_security(settings).aws_region == "ap-south-1"


def test_every_librdkafka_client_gets_the_security_options():
    settings = Settings(
        kafka_bootstrap="k:9096",
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="PLAIN",
        kafka_sasl_username="u",
        kafka_sasl_password="p",
    )
    options = client_options(settings, "k:9096")
    assert options["security.protocol"] == "SASL_SSL" and options["sasl.username"] == "u"


def test_faust_gets_the_credentials_in_the_app_settings():
    from streams.app import build_app

    settings = Settings(
        kafka_bootstrap="k:9096",
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-256",
        kafka_sasl_username="u",
        kafka_sasl_password="p",
        worker_group="security-test",
    )
    credentials = build_app(settings, "k:9096", web_port=6066).conf.broker_credentials
    assert isinstance(credentials, faust.SASLCredentials) and credentials.mechanism.value == "SCRAM-SHA-256"


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"TRAILHOUSE_KAFKA_SECURITY_PROTOCOL": "TLS"}, "PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL"),
        ({"TRAILHOUSE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "needs kafka_sasl_mechanism"),
        ({"TRAILHOUSE_KAFKA_SASL_MECHANISM": "PLAIN"}, "set kafka_security_protocol=SASL_SSL"),
        (
            {"TRAILHOUSE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "TRAILHOUSE_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256"},
            "needs kafka_sasl_username and kafka_sasl_password",
        ),
        (
            {"TRAILHOUSE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "TRAILHOUSE_KAFKA_SASL_MECHANISM": "GSSAPI"},
            "PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, AWS_MSK_IAM",
        ),
        (
            {"TRAILHOUSE_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "TRAILHOUSE_KAFKA_SASL_MECHANISM": "AWS_MSK_IAM"},
            "over TLS only",
        ),
        (
            {"TRAILHOUSE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "TRAILHOUSE_KAFKA_SASL_MECHANISM": "AWS_MSK_IAM"},
            "set kafka_aws_region",
        ),
        ({"TRAILHOUSE_KAFKA_SSL_CA_FILE": "/etc/ca.pem"}, "only with TLS"),
        (
            {"TRAILHOUSE_KAFKA_SECURITY_PROTOCOL": "SSL", "TRAILHOUSE_KAFKA_SSL_CA_FILE": "/nonexistent/ca.pem"},
            "no such file",
        ),
    ],
)
def test_inconsistent_security_settings_say_what_to_set(environ, message):
    with pytest.raises(ConfigError, match=message):
        load_settings(environ={"TRAILHOUSE_KAFKA_BOOTSTRAP": "kafka.internal:9092", **environ})


def test_the_embedded_broker_cannot_be_secured():
    with pytest.raises(ConfigError, match="embedded broker speaks PLAINTEXT only"):
        load_settings(environ={"TRAILHOUSE_KAFKA_SECURITY_PROTOCOL": "SSL"})


def test_passwords_stay_out_of_the_settings_repr():
    settings = load_settings(
        environ={
            "TRAILHOUSE_KAFKA_BOOTSTRAP": "k:9096",
            "TRAILHOUSE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "TRAILHOUSE_KAFKA_SASL_MECHANISM": "PLAIN",
            "TRAILHOUSE_KAFKA_SASL_USERNAME": "u",
            "TRAILHOUSE_KAFKA_SASL_PASSWORD": "kafka-secret",
            "TRAILHOUSE_CLICKHOUSE_URL": "https://u:clickhouse-secret@ch:8443",
        }
    )
    assert "secret" not in repr(settings)


def test_clickhouse_over_https_carries_the_tls_options_to_the_client(tls_files, monkeypatch):
    settings = load_settings(
        environ={
            "TRAILHOUSE_CLICKHOUSE_URL": "https://trailhouse:pw@clickhouse.example.com:8443",
            "TRAILHOUSE_CLICKHOUSE_CA_FILE": str(tls_files["ca"]),
        }
    )
    assert settings.clickhouse_dsn == (
        f"https://trailhouse:pw@clickhouse.example.com:8443?ca_cert={str(tls_files['ca']).replace('/', '%2F')}"
    )
    assert Settings(clickhouse_url="https://h:8443/?x=1", clickhouse_verify=False).clickhouse_dsn == (
        "https://h:8443/?x=1&verify=false"
    )
    assert Settings(clickhouse_url="https://h:8443").clickhouse_dsn == "https://h:8443"

    # clickhouse-connect reads the DSN's query as its HTTP client's keyword arguments.
    from clickhouse_connect.driver import httpclient

    seen = {}

    def capture(self, interface, host, port, username, password, *args, **kwargs):
        seen.update(kwargs, interface=interface, username=username, password=password)
        raise RuntimeError("captured")

    monkeypatch.setattr(httpclient.HttpClient, "__init__", capture)
    import clickhouse_connect

    with pytest.raises(RuntimeError, match="captured"):
        clickhouse_connect.get_client(dsn=settings.clickhouse_dsn)
    assert seen["ca_cert"] == str(tls_files["ca"])
    assert seen["interface"] == "https" and seen["username"] == "trailhouse" and seen["password"] == "pw"
