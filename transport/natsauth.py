"""Who may connect to NATS and what each identity may touch.

Every agency and the hub connect as their own NATS user (an nkey, generated
with the agency's keys) over mutual TLS (a client certificate from the
deployment's CA). The server configuration is *generated from the signed
agency directory*: an agency may publish only to its own ingress subjects,
its witness cosignatures and the JetStream API calls of its own consumers,
and subscribe only to its own reply inbox; the hub gets what the broker needs;
no other user exists, so nobody else gets anything.
"""

from __future__ import annotations

import ipaddress
import ssl
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import nkeys
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from sigbus.protocol.directory import Directory
from sigbus.protocol.ids import HUB, AgencyId
from sigbus.protocol.proofs import CHECKPOINT_REQUEST_SUBJECT
from sigbus.protocol.subjects import (
    CHECKPOINT_STREAM,
    CHECKPOINT_SUBJECT,
    INBOX_STREAM,
    PROOF_CONSISTENCY_SUBJECT,
    PROOF_INCLUSION_SUBJECT,
    cosignature_subject,
    inbox_consumer,
    inbox_subject,
    witness_consumer,
)
from sigbus.transport.errors import ConfigError
from sigbus.transport.files import read_file, write_private

CA_CERT = "ca.crt"
CA_KEY = "ca.key"
SERVER_CERT = "nats-server.crt"
SERVER_KEY = "nats-server.key"
#: Names the server certificate is valid for: loopback and the compose service.
SERVER_NAMES = ("localhost", "nats")
SERVER_IPS = ("127.0.0.1",)


def client_cert(agency: AgencyId) -> str:
    return f"{agency}.tls.crt"


def client_key(agency: AgencyId) -> str:
    return f"{agency}.tls.key"


def inbox_prefix(agency: AgencyId) -> str:
    """Each identity gets its own reply-inbox prefix, so none can read another's replies."""
    return f"_INBOX_{agency}"


def new_nkey_seed() -> str:
    return str(nkeys.encode_seed(ssl.RAND_bytes(32), nkeys.PREFIX_BYTE_USER).decode())


def nkey_public(seed: str) -> str:
    return str(nkeys.from_seed(seed.encode()).public_key.decode())


# -- permissions (pure) -------------------------------------------------------


def _consumer_api(stream: str, consumer: str, filter_subject: str) -> list[str]:
    """The JetStream API subjects one durable pull consumer needs, and nothing else.

    Creating it is allowed only in the subject form that names the filter
    (``CONSUMER.CREATE.<stream>.<name>.<filter>``): the server refuses a request
    whose body asks for another filter, so an agency cannot point its own
    consumer at another agency's inbox. The short forms, which let the body
    choose, are not granted.
    """
    return [
        f"$JS.API.CONSUMER.INFO.{stream}.{consumer}",
        f"$JS.API.CONSUMER.CREATE.{stream}.{consumer}.{filter_subject}",
        f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}",
        f"$JS.ACK.{stream}.{consumer}.>",
    ]


def agency_permissions(agency: AgencyId) -> tuple[list[str], list[str]]:
    """(publish allow, subscribe allow) for an agency adapter."""
    publish = [
        f"sigbus.ingress.{agency}.>",
        cosignature_subject(agency),
        PROOF_INCLUSION_SUBJECT,
        PROOF_CONSISTENCY_SUBJECT,
        CHECKPOINT_REQUEST_SUBJECT,
        *_consumer_api(INBOX_STREAM, inbox_consumer(agency), inbox_subject(agency)),
        *_consumer_api(CHECKPOINT_STREAM, witness_consumer(agency), CHECKPOINT_SUBJECT),
    ]
    return publish, [f"{inbox_prefix(agency)}.>"]


def hub_permissions() -> tuple[list[str], list[str]]:
    publish = ["sigbus.>", "$JS.API.>", "$JS.ACK.>"]
    subscribe = [
        PROOF_INCLUSION_SUBJECT,
        PROOF_CONSISTENCY_SUBJECT,
        CHECKPOINT_REQUEST_SUBJECT,
        f"{inbox_prefix(HUB)}.>",
    ]
    return publish, subscribe


def _quoted(subjects: list[str]) -> str:
    return "[" + ", ".join(f'"{s}"' for s in subjects) + "]"


def render_authorization(directory: Directory) -> list[str]:
    """nats-server ``authorization`` block: one nkey user per directory entry."""
    lines = ["authorization {", "  users = ["]
    for entry in directory.agencies:
        if entry.nats_user is None:
            raise ConfigError(f"directory entry {entry.agency} has no NATS user")
        publish, subscribe = (
            hub_permissions() if entry.agency == HUB else agency_permissions(entry.agency)
        )
        lines += [
            f"    # {entry.agency}",
            f'    {{ nkey: "{entry.nats_user}", permissions: {{',
            f"        publish: {{ allow: {_quoted(publish)} }},",
            f"        subscribe: {{ allow: {_quoted(subscribe)} }},",
            # The hub answers proof requests on the requester's own reply inbox.
            f"        allow_responses: {'true' if entry.agency == HUB else 'false'}",
            "    } },",
        ]
    return [*lines, "  ]", "}"]


def render_tls(cert_dir: str) -> list[str]:
    """Mutual TLS: a client without a certificate from our CA is refused."""
    return [
        "tls {",
        f'  cert_file: "{cert_dir}/{SERVER_CERT}"',
        f'  key_file: "{cert_dir}/{SERVER_KEY}"',
        f'  ca_file: "{cert_dir}/{CA_CERT}"',
        "  verify: true",
        "  timeout: 2",
        "}",
    ]


# -- client side --------------------------------------------------------------


@dataclass(frozen=True)
class NatsCredentials:
    """How one identity authenticates. ``insecure_dev``: plaintext, no auth (debug only)."""

    agency: AgencyId
    nkey_seed: str | None = None
    keys_dir: Path | None = None
    insecure_dev: bool = False

    def tls_context(self) -> ssl.SSLContext | None:
        if self.insecure_dev or self.keys_dir is None:
            return None  # the caller refuses to go on in plaintext unless insecure_dev
        ca_file = str(self.keys_dir / CA_CERT)
        cert, key = (
            self.keys_dir / client_cert(self.agency),
            self.keys_dir / client_key(self.agency),
        )
        try:
            ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_file)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            ctx.load_cert_chain(str(cert), str(key))
        except (OSError, ssl.SSLError) as e:
            # FileNotFoundError, or a key the ssl module cannot read (e.g. encrypted PEM).
            raise ConfigError(
                f"TLS material for {self.agency} unusable: {CA_CERT}, {cert.name} and "
                f"{key.name} (unencrypted PEM) must be in {self.keys_dir}"
            ) from e
        return ctx


# -- development PKI (I/O) ----------------------------------------------------


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    write_private(
        path,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "sigbus development"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _issue(
    common_name: str,
    usage: x509.ObjectIdentifier,
    san: list[x509.GeneralName] | None,
    ca_key: ec.EllipticCurvePrivateKey,
    ca_name: x509.Name,
    *,
    now: datetime,
    validity: timedelta,
) -> tuple[bytes, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + validity)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.PEM), key


def issue_dev_client_cert(
    keys_dir: Path, agency: AgencyId, *, now: datetime, validity: timedelta
) -> None:
    """A client certificate for one more agency from the development CA in ``keys_dir``."""
    ca = x509.load_pem_x509_certificate(read_file(keys_dir / CA_CERT))
    ca_key = serialization.load_pem_private_key(read_file(keys_dir / CA_KEY), password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise ConfigError("the development CA key is not an EC key")
    pem, key = _issue(
        f"sigbus {agency}",
        ExtendedKeyUsageOID.CLIENT_AUTH,
        None,
        ca_key,
        ca.subject,
        now=now,
        validity=validity,
    )
    (keys_dir / client_cert(agency)).write_bytes(pem)
    _write_key(keys_dir / client_key(agency), key)


def generate_dev_pki(
    keys_dir: Path, identities: tuple[AgencyId, ...], *, now: datetime, validity: timedelta
) -> None:
    """A development CA, a server certificate and one client certificate per identity."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("sigbus development CA (NOT FOR PRODUCTION)")
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + validity)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    (keys_dir / CA_CERT).write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    _write_key(keys_dir / CA_KEY, ca_key)
    san: list[x509.GeneralName] = [x509.DNSName(n) for n in SERVER_NAMES]
    san += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in SERVER_IPS]
    pem, key = _issue(
        "sigbus nats-server",
        ExtendedKeyUsageOID.SERVER_AUTH,
        san,
        ca_key,
        ca_name,
        now=now,
        validity=validity,
    )
    (keys_dir / SERVER_CERT).write_bytes(pem)
    _write_key(keys_dir / SERVER_KEY, key)
    for agency in identities:
        issue_dev_client_cert(keys_dir, agency, now=now, validity=validity)
