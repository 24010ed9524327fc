"""Who may connect to NATS and what each identity may touch.

Every agency and the hub connect as their own NATS user (an nkey, generated
with the agency's keys) over mutual TLS (a client certificate from the
deployment's CA). The server configuration is *generated from the signed
agency directory*, and isolation is the bus's own, by NATS accounts:

* the hub's account holds every stream and consumer; only the hub's user and
  the read-only auditor live in it;
* each agency has an account of its own, without JetStream. Messages never
  cross accounts except through what the hub account exports *to that one
  agency* by name: its ingress subject, its hub services
  (``sigbus.hub.<agency>.>``), its cosignature subject, and the next-message
  and ack subjects of the two consumers the hub created for it. Replies cross
  back only to the requester (the server maps them to ``_R_`` subjects), so no
  reply can be aimed at a stream;
* witness gossip goes from agency to agency without the hub account: each
  agency account exports its own gossip subject (``sigbus.log.gossip.<agency>``)
  as a stream to the other agency accounts, which import it. An agency may
  publish on its own gossip subject only and subscribe to the others';
* ``$SYS`` has no user: nobody gets server internals.

Within each account the user's permissions allow the same subjects again and
nothing else (defence in depth, and the server reports a violation at once).
"""

from __future__ import annotations

import ipaddress
import ssl
from collections.abc import Iterable, Mapping
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
from sigbus.protocol.profiles import BusLimits
from sigbus.protocol.subjects import (
    CHECKPOINT_STREAM,
    HUB_JS_PREFIX,
    HUB_SERVICES_ALL,
    INBOX_STREAM,
    LEASE_BUCKET,
    LOG_STREAM,
    cosignature_subject,
    gossip_subject,
    inbox_consumer,
    ingress_subject,
    urgent_subject,
    witness_consumer,
)
from sigbus.transport.errors import ConfigError
from sigbus.transport.files import read_file, write_private

CA_CERT = "ca.crt"
CA_KEY = "ca.key"
SERVER_CERT = "nats-server.crt"
SERVER_KEY = "nats-server.key"
#: Names the server certificate is valid for: loopback and the compose service.
#: Routes between the nodes of a cluster: the same CA, a certificate each node shows
#: both as a server and as a client (mutual TLS on every route).
ROUTE_CERT = "nats-route.crt"
ROUTE_KEY = "nats-route.key"
#: The server names the development certificates cover: one server (``nats``) or the
#: three nodes of docker-compose's cluster, and loopback for the tests.
SERVER_NAMES = ("localhost", "nats", "nats-1", "nats-2", "nats-3")
SERVER_IPS = ("127.0.0.1",)
#: The NATS account that holds the streams.
HUB_ACCOUNT = "SIGBUS_HUB"
#: The read-only identity that exports the disclosure log (``sigbus audit export``).
AUDITOR = "auditor"
AUDITOR_SEED_FILE = "auditor.nkey"
AUDITOR_PUBLIC_FILE = "auditor.nkey.pub"
JS_API = "$JS.API"


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


# -- accounts and permissions (pure) ------------------------------------------


@dataclass(frozen=True)
class Export:
    """One service the hub account exports to exactly one agency account."""

    subject: str  # in the hub account
    local: str  # the name the agency publishes to in its own account
    stream_response: bool = False  # a pull request is answered by many messages


def _consumer_exports(stream: str, consumer: str) -> list[Export]:
    """Fetching from and acking one consumer the hub made: never creating,
    changing, deleting or listing one, and no other JetStream API at all."""
    next_msg = f"CONSUMER.MSG.NEXT.{stream}.{consumer}"
    ack = f"$JS.ACK.{stream}.{consumer}.>"
    return [
        Export(f"{JS_API}.{next_msg}", f"{HUB_JS_PREFIX}.{next_msg}", stream_response=True),
        Export(ack, ack),
    ]


def agency_exports(agency: AgencyId) -> list[Export]:
    own = [
        ingress_subject(agency),
        urgent_subject(agency),
        f"sigbus.hub.{agency}.>",
        cosignature_subject(agency),
    ]
    return [
        *(Export(s, s) for s in own),
        *_consumer_exports(INBOX_STREAM, inbox_consumer(agency)),
        *_consumer_exports(CHECKPOINT_STREAM, witness_consumer(agency)),
    ]


def agency_permissions(
    agency: AgencyId, peers: Iterable[AgencyId] = ()
) -> tuple[list[str], list[str]]:
    """(publish allow, subscribe allow) for an agency's user in its own account.

    ``peers``: the other agencies, whose witness gossip this one reads.
    """
    publish = [*(e.local for e in agency_exports(agency)), gossip_subject(agency)]
    subscribe = [f"{inbox_prefix(agency)}.>", *(gossip_subject(p) for p in peers if p != agency)]
    return publish, subscribe


def hub_permissions() -> tuple[list[str], list[str]]:
    # $KV.<lease bucket>.>: the hub lease (transport/lease.py); no agency may touch it.
    publish = ["sigbus.>", f"{JS_API}.>", "$JS.ACK.>", f"$KV.{LEASE_BUCKET}.>"]
    return publish, [HUB_SERVICES_ALL, f"{inbox_prefix(HUB)}.>"]


def auditor_permissions() -> tuple[list[str], list[str]]:
    """Read stored messages of the log and checkpoint streams, one by one, and nothing
    else: no consumer (a push consumer could deliver into a stream), no publish."""
    publish = [
        f"{JS_API}.{api}.{stream}"
        for stream in (LOG_STREAM, CHECKPOINT_STREAM)
        for api in ("STREAM.INFO", "STREAM.MSG.GET")
    ]
    return publish, [f"{inbox_prefix(AUDITOR)}.>"]


def _quoted(subjects: Iterable[str]) -> str:
    return "[" + ", ".join(f'"{s}"' for s in subjects) + "]"


def _user(nkey: str, name: str, perms: tuple[list[str], list[str]], *, responds: bool) -> list[str]:
    publish, subscribe = perms
    return [
        f"      # {name}",
        f'      {{ nkey: "{nkey}", permissions: {{',
        f"          publish: {{ allow: {_quoted(publish)} }},",
        f"          subscribe: {{ allow: {_quoted(subscribe)} }},",
        # Only the hub answers requests; an agency's replies come back to it.
        f"          allow_responses: {'true' if responds else 'false'}",
        "      } },",
    ]


def render_authorization(
    directory: Directory,
    *,
    auditor: str | None = None,
    limits: Mapping[str, BusLimits] | None = None,
) -> list[str]:
    """nats-server ``accounts`` block: the hub account and one account per agency.

    ``auditor``: the public nkey of the read-only auditor, if one is configured.
    ``limits``: each agency's share of the bus, from its profile (an agency without
    a profile gets the defaults; the hub denies its messages anyway).
    """
    limits = limits or {}
    agencies = [e for e in directory.agencies if e.agency != HUB]
    for entry in directory.agencies:
        if entry.nats_user is None:
            raise ConfigError(f"directory entry {entry.agency} has no NATS user")
    hub = directory.entry(HUB)
    assert hub.nats_user is not None
    lines = ["accounts {", f"  {HUB_ACCOUNT}: {{", "    jetstream: enabled", "    users: ["]
    lines += _user(hub.nats_user, HUB, hub_permissions(), responds=True)
    if auditor is not None:
        lines += _user(auditor, AUDITOR, auditor_permissions(), responds=False)
    lines += ["    ]", "    exports: ["]
    for entry in agencies:
        for export in agency_exports(entry.agency):
            response = ", response_type: stream" if export.stream_response else ""
            lines.append(
                f'      {{ service: "{export.subject}", accounts: ["{entry.agency}"]{response} }},'
            )
    lines += ["    ]", "  }"]
    for entry in agencies:
        assert entry.nats_user is not None
        lim = limits.get(entry.agency, BusLimits())
        lines += [f'  "{entry.agency}": {{', "    users: ["]
        peers = [e.agency for e in agencies if e.agency != entry.agency]
        lines += _user(
            entry.nats_user, entry.agency, agency_permissions(entry.agency, peers), responds=False
        )
        lines += ["    ]"]
        if peers:
            lines.append(
                f'    exports: [ {{ stream: "{gossip_subject(entry.agency)}", '
                f"accounts: {_quoted(peers)} }} ]"
            )
        lines += ["    imports: ["]
        for peer in peers:
            lines.append(
                f'      {{ stream: {{ account: "{peer}", subject: "{gossip_subject(peer)}" }} }},'
            )
        for export in agency_exports(entry.agency):
            lines.append(
                f'      {{ service: {{ account: "{HUB_ACCOUNT}", subject: "{export.subject}" }}, '
                f'to: "{export.local}" }},'
            )
        lines += [
            "    ]",
            f"    limits: {{ max_payload: {lim.max_payload}, "
            f"max_connections: {lim.max_connections}, "
            f"max_subscriptions: {lim.max_subscriptions} }}",
            "  }",
        ]
    return [*lines, "}"]


def render_tls(cert_dir: str, *, indent: str = "", route: bool = False) -> list[str]:
    """Mutual TLS: a client (or, with ``route``, a cluster node) without a certificate
    from our CA is refused."""
    cert, key = (ROUTE_CERT, ROUTE_KEY) if route else (SERVER_CERT, SERVER_KEY)
    lines = [
        "tls {",
        f'  cert_file: "{cert_dir}/{cert}"',
        f'  key_file: "{cert_dir}/{key}"',
        f'  ca_file: "{cert_dir}/{CA_CERT}"',
        "  verify: true",
        "  timeout: 2",
        "}",
    ]
    return [indent + line for line in lines]


# -- client side --------------------------------------------------------------


@dataclass(frozen=True)
class NatsCredentials:
    """How one identity authenticates. ``insecure_dev``: plaintext, no auth (debug only)."""

    agency: AgencyId
    nkey_seed: str | None = None
    keys_dir: Path | None = None
    insecure_dev: bool = False

    @property
    def js_prefix(self) -> str:
        """Where this identity finds the hub's JetStream: its own account's API for
        the hub and the auditor, the hub's exports for an agency. Without accounts
        (``insecure_dev``) everyone shares one account."""
        if self.insecure_dev or self.agency in (HUB, AUDITOR):
            return JS_API
        return HUB_JS_PREFIX

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
    usages: list[x509.ObjectIdentifier],
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
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    )
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.PEM), key


def _dev_ca(keys_dir: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    ca = x509.load_pem_x509_certificate(read_file(keys_dir / CA_CERT))
    ca_key = serialization.load_pem_private_key(read_file(keys_dir / CA_KEY), password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise ConfigError("the development CA key is not an EC key")
    return ca, ca_key


def issue_dev_client_cert(
    keys_dir: Path, agency: AgencyId, *, now: datetime, validity: timedelta
) -> None:
    """A client certificate for one more agency from the development CA in ``keys_dir``."""
    ca, ca_key = _dev_ca(keys_dir)
    pem, key = _issue(
        f"sigbus {agency}",
        [ExtendedKeyUsageOID.CLIENT_AUTH],
        None,
        ca_key,
        ca.subject,
        now=now,
        validity=validity,
    )
    (keys_dir / client_cert(agency)).write_bytes(pem)
    _write_key(keys_dir / client_key(agency), key)


def issue_dev_server_certs(keys_dir: Path, *, now: datetime, validity: timedelta) -> None:
    """The server certificate clients check, and the route certificate cluster nodes
    show each other (server and client use: each route is mutual TLS), from the
    development CA in ``keys_dir``."""
    ca, ca_key = _dev_ca(keys_dir)
    san: list[x509.GeneralName] = [x509.DNSName(n) for n in SERVER_NAMES]
    san += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in SERVER_IPS]
    for (cert_file, key_file), common_name, usages in (
        ((SERVER_CERT, SERVER_KEY), "sigbus nats-server", [ExtendedKeyUsageOID.SERVER_AUTH]),
        (
            (ROUTE_CERT, ROUTE_KEY),
            "sigbus nats-route",
            [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
        ),
    ):
        pem, key = _issue(common_name, usages, san, ca_key, ca.subject, now=now, validity=validity)
        (keys_dir / cert_file).write_bytes(pem)
        _write_key(keys_dir / key_file, key)


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
    issue_dev_server_certs(keys_dir, now=now, validity=validity)
    for agency in identities:
        issue_dev_client_cert(keys_dir, agency, now=now, validity=validity)
