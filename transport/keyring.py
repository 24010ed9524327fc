"""Agency keys for agency IT: passphrase-protected key files, public bundles, and
pure edits of the agency directory (add, rotate, revoke).

Every directory edit is a pure function: it takes a :class:`Directory` and the
time as arguments and returns a new directory with ``serial`` bumped and
``issued_at`` set; the caller signs it with the root key
(:func:`sigbus.keystore.save_directory`).

Encrypted private key file (``sigbus-encrypted-private-keys/v1``), JSON::

    {"format": "sigbus-encrypted-private-keys/v1",
     "agency": "police",
     "kdf": {"name": "scrypt", "n": 32768, "r": 8, "p": 1, "salt": <b64, 16 bytes>},
     "aead": "aes-256-gcm", "nonce": <b64, 12 bytes>,
     "ciphertext": <b64: AES-256-GCM(key, nonce, plaintext, aad)>}

``key = scrypt(passphrase UTF-8, salt, n, r, p, 32 bytes)`` (RFC 7914); the
plaintext is the ``sigbus-private-keys/v1`` JSON document; the associated data
is :data:`ENCRYPTED_KEYFILE_AAD_DOMAIN` followed by the RFC 8785 encoding of
every field except ``ciphertext``, so neither the agency nor the KDF parameters
can be changed without detection.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric import mlkem, x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from pydantic import AwareDatetime, Field, ValidationError

from sigbus.protocol.canonical import B64Bytes, canonical_json
from sigbus.protocol.directory import (
    DIRECTORY_VALIDITY,
    AgencyEntry,
    Directory,
    DirectoryKey,
    KeyStatus,
    KeyUse,
    key_id_for,
)
from sigbus.protocol.ids import AgencyId
from sigbus.protocol.keyfile import PrivateKeyFile
from sigbus.protocol.messages import StrictModel
from sigbus.protocol.sealing import SuiteId, validate_public_key
from sigbus.protocol.signing import HYBRID_PUBLIC_BYTES, HybridPrivateKey
from sigbus.transport.errors import ConfigError
from sigbus.transport.files import read_private
from sigbus.transport.natsauth import nkey_public

ENCRYPTED_FORMAT: Literal["sigbus-encrypted-private-keys/v1"] = "sigbus-encrypted-private-keys/v1"
PUBLIC_FORMAT: Literal["sigbus-public-keys/v1"] = "sigbus-public-keys/v1"
ENCRYPTED_KEYFILE_AAD_DOMAIN = b"sigbus/v1/encrypted-private-keys\n"
SCRYPT_N = 2**15
SCRYPT_R = 8
SCRYPT_P = 1
MAX_KEYS_PER_AGENCY = 32


class KeyringError(ConfigError):
    """A key file or directory edit was refused. Messages never echo key material."""


class WrongPassphrase(KeyringError):
    """The passphrase does not open the encrypted key file (or the file was altered)."""


# -- encrypted private key files ----------------------------------------------


class ScryptParams(StrictModel):
    name: Literal["scrypt"] = "scrypt"
    n: Annotated[int, Field(ge=2**14, le=2**20)] = SCRYPT_N
    r: Annotated[int, Field(ge=1, le=32)] = SCRYPT_R
    p: Annotated[int, Field(ge=1, le=16)] = SCRYPT_P
    salt: B64Bytes


class EncryptedKeyFile(StrictModel):
    format: Literal["sigbus-encrypted-private-keys/v1"] = ENCRYPTED_FORMAT
    agency: AgencyId
    kdf: ScryptParams
    aead: Literal["aes-256-gcm"] = "aes-256-gcm"
    nonce: B64Bytes
    ciphertext: B64Bytes

    def aad(self) -> bytes:
        return ENCRYPTED_KEYFILE_AAD_DOMAIN + canonical_json(
            self.model_dump(mode="json", exclude={"ciphertext"})
        )


def _derive(passphrase: str, kdf: ScryptParams) -> bytes:
    if kdf.n & (kdf.n - 1) != 0:
        raise KeyringError("scrypt n must be a power of two")
    return Scrypt(salt=kdf.salt, length=32, n=kdf.n, r=kdf.r, p=kdf.p).derive(
        passphrase.encode("utf-8")
    )


def encrypt_keyfile(keyfile: PrivateKeyFile, passphrase: str) -> EncryptedKeyFile:
    if not passphrase:
        raise KeyringError("the passphrase must not be empty")
    shell = EncryptedKeyFile(
        agency=keyfile.agency,
        kdf=ScryptParams(salt=os.urandom(16)),
        nonce=os.urandom(12),
        ciphertext=b"",
    )
    key = _derive(passphrase, shell.kdf)
    sealed = AESGCM(key).encrypt(shell.nonce, keyfile.model_dump_json().encode(), shell.aad())
    return shell.model_copy(update={"ciphertext": sealed})


def decrypt_keyfile(encrypted: EncryptedKeyFile, passphrase: str) -> PrivateKeyFile:
    key = _derive(passphrase, encrypted.kdf)
    try:
        plaintext = AESGCM(key).decrypt(encrypted.nonce, encrypted.ciphertext, encrypted.aad())
    except InvalidTag as e:
        raise WrongPassphrase("wrong passphrase, or the key file was altered") from e
    try:
        keyfile = PrivateKeyFile.model_validate_json(plaintext)
    except ValidationError as e:
        raise KeyringError("decrypted key file is malformed") from e
    if keyfile.agency != encrypted.agency:
        raise KeyringError("encrypted key file names another agency than its content")
    return keyfile


def is_encrypted(raw: bytes) -> bool:
    return ENCRYPTED_FORMAT.encode() in raw[:200]


def load_private_file(path: Path, passphrase: str | None = None) -> PrivateKeyFile:
    """Load a private key file, encrypted (needs ``passphrase``) or plain."""
    raw = read_private(path)
    try:
        if is_encrypted(raw):
            if passphrase is None:
                raise KeyringError(f"{path.name} is encrypted: a passphrase is needed")
            return decrypt_keyfile(EncryptedKeyFile.model_validate_json(raw), passphrase)
        return PrivateKeyFile.model_validate_json(raw)
    except ValidationError as e:
        raise KeyringError(f"private key file {path.name} is malformed") from e


# -- the public part handed to the hub ------------------------------------------


class PublicKey(StrictModel):
    key_id: str
    use: KeyUse
    suite: SuiteId | None = None
    public_key: B64Bytes


class PublicBundle(StrictModel):
    """What agency IT hands to the hub: public keys only, self-certifying key ids."""

    format: Literal["sigbus-public-keys/v1"] = PUBLIC_FORMAT
    agency: AgencyId
    nats_user: str | None = None
    keys: Annotated[tuple[PublicKey, ...], Field(min_length=1, max_length=4)]

    def checked(self) -> PublicBundle:
        """Raise :class:`KeyringError` unless every key id matches its key and use."""
        for k in self.keys:
            if k.key_id != key_id_for(self.agency, k.use, k.public_key):
                raise KeyringError("a key id does not match its public key")
            if k.use is KeyUse.SEALING:
                if k.suite is None:
                    raise KeyringError("a sealing key needs its suite")
                try:
                    validate_public_key(k.suite, k.public_key)
                except ValueError as e:
                    raise KeyringError("a sealing key is not a key of its suite") from e
            elif k.use is KeyUse.SIGNING:
                if len(k.public_key) != HYBRID_PUBLIC_BYTES:
                    raise KeyringError(
                        f"a signing key must be a {HYBRID_PUBLIC_BYTES}-byte hybrid "
                        "Ed25519+ML-DSA-65 key"
                    )
            elif len(k.public_key) != HYBRID_PUBLIC_BYTES:
                raise KeyringError(
                    f"a {k.use.value} key must be a {HYBRID_PUBLIC_BYTES}-byte hybrid "
                    "Ed25519+ML-DSA-65 key"
                )
        uses = [k.use for k in self.keys]
        if uses.count(KeyUse.SIGNING) != 1 or uses.count(KeyUse.SEALING) != 1:
            raise KeyringError("a bundle holds exactly one signing and one sealing key")
        if uses.count(KeyUse.WITNESS) > 1:
            raise KeyringError("a bundle holds at most one witness key")
        return self


def sealing_public_bytes(suite: SuiteId, private_bytes: bytes) -> bytes:
    if suite is SuiteId.X25519:
        return (
            x25519.X25519PrivateKey.from_private_bytes(private_bytes)
            .public_key()
            .public_bytes_raw()
        )
    seed, scalar = private_bytes[:64], private_bytes[64:]
    mk = mlkem.MLKEM768PrivateKey.from_seed_bytes(seed)
    xk = x25519.X25519PrivateKey.from_private_bytes(scalar)
    return mk.public_key().public_bytes_raw() + xk.public_key().public_bytes_raw()


def public_bundle(keyfile: PrivateKeyFile) -> PublicBundle:
    signing_pub = (
        HybridPrivateKey.from_private_bytes(keyfile.signing_private)
        .public_key()
        .public_bytes_raw()
    )
    keys = [
        PublicKey(key_id=keyfile.signing_key_id, use=KeyUse.SIGNING, public_key=signing_pub),
        PublicKey(
            key_id=keyfile.sealing_key_id,
            use=KeyUse.SEALING,
            suite=keyfile.sealing_suite,
            public_key=sealing_public_bytes(keyfile.sealing_suite, keyfile.sealing_private),
        ),
    ]
    if keyfile.witness_private is not None and keyfile.witness_key_id is not None:
        witness_pub = (
            HybridPrivateKey.from_private_bytes(keyfile.witness_private)
            .public_key()
            .public_bytes_raw()
        )
        keys.append(
            PublicKey(key_id=keyfile.witness_key_id, use=KeyUse.WITNESS, public_key=witness_pub)
        )
    if keyfile.hub is not None:
        log_pub = (
            HybridPrivateKey.from_private_bytes(keyfile.hub.log_signing_private)
            .public_key()
            .public_bytes_raw()
        )
        keys.append(
            PublicKey(
                key_id=key_id_for(keyfile.agency, KeyUse.LOG, log_pub),
                use=KeyUse.LOG,
                public_key=log_pub,
            )
        )
    bundle = PublicBundle(
        agency=keyfile.agency,
        nats_user=nkey_public(keyfile.nats_seed) if keyfile.nats_seed else None,
        keys=tuple(keys),
    )
    for k in bundle.keys:
        if k.use is not KeyUse.LOG and k.key_id != key_id_for(keyfile.agency, k.use, k.public_key):
            raise KeyringError("the key file's key ids do not match its keys")
    return bundle


# -- pure directory edits -------------------------------------------------------


def _directory_keys(
    bundle: PublicBundle, not_before: datetime, not_after: datetime
) -> tuple[DirectoryKey, ...]:
    if not_after <= not_before:
        raise KeyringError("not_after must be after not_before")
    return tuple(
        DirectoryKey(
            key_id=k.key_id,
            use=k.use,
            suite=k.suite,
            public_key=k.public_key,
            not_before=not_before,
            not_after=not_after,
        )
        for k in bundle.checked().keys
    )


def _reissued(directory: Directory, agencies: tuple[AgencyEntry, ...], now: datetime) -> Directory:
    """The next directory: a higher serial, and in force for DIRECTORY_VALIDITY from now."""
    return Directory(
        serial=directory.serial + 1,
        issued_at=now,
        expires_at=now + DIRECTORY_VALIDITY,
        agencies=agencies,
    )


def renew_directory(directory: Directory, *, now: datetime) -> Directory:
    """The same keys under a fresh serial and expiry (``sigbus keys renew``)."""
    return _reissued(directory, directory.agencies, now)


def _all_key_ids(directory: Directory) -> set[str]:
    return {k.key_id for e in directory.agencies for k in e.keys}


def add_agency(
    directory: Directory,
    bundle: PublicBundle,
    *,
    not_before: datetime,
    not_after: datetime,
    now: datetime,
) -> Directory:
    """Add a new agency with the keys of ``bundle``. An agency already listed is refused
    (use :func:`rotate_keys`)."""
    if any(e.agency == bundle.agency for e in directory.agencies):
        raise KeyringError(f"{bundle.agency} is already in the directory: use rotate")
    keys = _directory_keys(bundle, not_before, not_after)
    if _all_key_ids(directory) & {k.key_id for k in keys}:
        raise KeyringError("a key id is already in the directory")
    entry = AgencyEntry(agency=bundle.agency, nats_user=bundle.nats_user, keys=keys)
    return _reissued(directory, (*directory.agencies, entry), now)


def rotate_keys(
    directory: Directory,
    bundle: PublicBundle,
    *,
    not_before: datetime,
    not_after: datetime,
    now: datetime,
    retire_old_at: datetime | None = None,
) -> Directory:
    """Add ``bundle``'s keys alongside the agency's current ones (overlap).

    The newest usable key of a use is the one that seals (see
    :meth:`Directory.key_by_use`); both signing keys verify during the overlap.
    With ``retire_old_at`` the older keys' ``not_after`` is brought forward to it
    (never pushed later), which ends the overlap.
    """
    entry = directory.entry(bundle.agency)
    keys = _directory_keys(bundle, not_before, not_after)
    if _all_key_ids(directory) & {k.key_id for k in keys}:
        raise KeyringError("a key id is already in the directory")
    if retire_old_at is not None and retire_old_at < not_before:
        raise KeyringError("the old keys may not retire before the new ones start: no overlap")
    old = tuple(
        k.model_copy(update={"not_after": min(k.not_after, retire_old_at)})
        if retire_old_at is not None
        else k
        for k in entry.keys
    )
    if len(old) + len(keys) > MAX_KEYS_PER_AGENCY:
        raise KeyringError("too many keys for one agency: remove expired ones first")
    new_entry = entry.model_copy(
        update={"keys": (*old, *keys), "nats_user": bundle.nats_user or entry.nats_user}
    )
    return _reissued(
        directory,
        tuple(new_entry if e.agency == bundle.agency else e for e in directory.agencies),
        now,
    )


def revoke_key(directory: Directory, key_id: str, *, at: datetime, now: datetime) -> Directory:
    """Mark ``key_id`` revoked from ``at`` on. An earlier revocation time is kept."""
    found = False
    agencies = []
    for entry in directory.agencies:
        keys = []
        for k in entry.keys:
            if k.key_id == key_id:
                found = True
                when = at if k.revoked_at is None else min(k.revoked_at, at)
                k = k.model_copy(update={"status": KeyStatus.REVOKED, "revoked_at": when})
            keys.append(k)
        agencies.append(entry.model_copy(update={"keys": tuple(keys)}))
    if not found:
        raise KeyringError("no key with that id in the directory")
    return _reissued(directory, tuple(agencies), now)


class DirectoryRow(StrictModel):
    agency: AgencyId
    key_id: str
    use: KeyUse
    not_before: AwareDatetime
    not_after: AwareDatetime
    status: str


def directory_rows(directory: Directory, *, at: datetime) -> list[DirectoryRow]:
    """One row per key; ``status`` is ``active``, ``revoked``, ``expired`` or ``pending``
    as of ``at``, and ``sealing`` marks the key senders seal to now."""
    rows = []
    for entry in directory.agencies:
        try:
            sealing_id: str | None = directory.sealing_key(entry.agency, at=at).key_id
        except Exception:  # noqa: BLE001 - no usable sealing key is shown, not raised
            sealing_id = None
        for k in entry.keys:
            if k.revoked_at is not None and at >= k.revoked_at:
                status = f"revoked {k.revoked_at.isoformat()}"
            elif k.revoked_at is not None:
                status = f"revokes {k.revoked_at.isoformat()}"
            elif at < k.not_before:
                status = "pending"
            elif at >= k.not_after:
                status = "expired"
            else:
                status = "active"
            if k.key_id == sealing_id:
                status += " (seals)"
            rows.append(
                DirectoryRow(
                    agency=entry.agency,
                    key_id=k.key_id,
                    use=k.use,
                    not_before=k.not_before,
                    not_after=k.not_after,
                    status=status,
                )
            )
    return rows
