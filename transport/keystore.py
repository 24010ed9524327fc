"""Reading and writing key material and the signed directory (I/O edge).

Private key files are created with mode 0600 from the start (no window in
which another user could read them).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import structlog
from pydantic import ValidationError

from sigbus.audit.dirlog import DirectoryLogProof
from sigbus.protocol.directory import (
    AgencyEntry,
    Directory,
    DirectoryKey,
    DirectoryState,
    KeyUse,
    SignedDirectory,
    TrustedDirectory,
    carry_endorsements,
    directory_digest,
    endorse,
    key_id_for,
    parse_signed_directory,
    parse_signed_root,
    sign_directory,
    verify_directory,
)
from sigbus.protocol.errors import DirectoryError, DirectoryRefused, ProtocolError
from sigbus.protocol.ids import HUB, AgencyId
from sigbus.protocol.keyfile import HubSecrets, PrivateKeyFile, RootKeyFile
from sigbus.protocol.root import (
    Root,
    RootKey,
    SignedRoot,
    root_key_id_for,
    sign_root,
    verify_root_step,
)
from sigbus.protocol.sealing import DEFAULT_SUITE, SuiteId, generate_sealing_key
from sigbus.protocol.signing import HybridPrivateKey
from sigbus.transport.dirlog_files import log_published, unlogged_reason
from sigbus.transport.errors import ConfigError
from sigbus.transport.files import read_file, read_private, write_private
from sigbus.transport.keyring import add_agency, load_private_file, public_bundle
from sigbus.transport.natsauth import (
    AUDITOR,
    AUDITOR_PUBLIC_FILE,
    AUDITOR_SEED_FILE,
    generate_dev_pki,
    issue_dev_client_cert,
    new_nkey_seed,
    nkey_public,
)

log = structlog.get_logger("sigbus.keys")

DEV_KEYS_DIR = Path(__file__).resolve().parent.parent / "keys" / "dev"
#: Present in every development keys directory (``keys dev-generate`` writes it).
DEV_MARKER = "DEVELOPMENT-KEYS-NOT-FOR-PRODUCTION"
DIRECTORY_FILE = "directory.json"
#: A signed directory still waiting for root signatures or endorsements (``keys publish``).
PENDING_DIRECTORY_FILE = "directory.pending.json"
#: The serial and digest of the last directory this party trusted (written by the
#: hub and by each adapter beside its keys): a restart cannot roll the directory back.
DIRECTORY_STATE_FILE = "directory-state.json"
#: Where that file goes when the keys directory is mounted read-only (a container).
STATE_DIR_ENV = "SIGBUS_STATE_DIR"
PASSPHRASE_ENV = "SIGBUS_KEY_PASSPHRASE"  # noqa: S105 - the variable name, not a secret
#: The signed root every party pins (``sigbus.protocol.root``).
ROOT_FILE = "root.json"
#: The single-key root of before issue #10: removed when a new root is made.
LEGACY_ROOT_FILES = ("root.pub", "root.key.json")
DEV_KEY_VALIDITY = timedelta(days=10 * 365)
#: The development root: three holders, any two of them with the hub among them.
DEV_ROOT_HOLDERS: tuple[AgencyId, ...] = (HUB, "police", "social")
DEV_ROOT_THRESHOLD = 2
#: Root key holders and their private keys, as they sign.
RootSigners = list[tuple[AgencyId, HybridPrivateKey]]


def private_key_path(keys_dir: Path, agency: AgencyId) -> Path:
    return keys_dir / f"{agency}.key.json"


@dataclass(frozen=True)
class GeneratedAgency:
    keyfile: PrivateKeyFile
    entry: AgencyEntry


def generate_agency(
    agency: AgencyId, *, now: datetime, suite: SuiteId = DEFAULT_SUITE
) -> GeneratedAgency:
    signing = HybridPrivateKey.generate()
    signing_pub = signing.public_key().public_bytes_raw()
    sealing = generate_sealing_key(suite)
    sig_id = key_id_for(agency, KeyUse.SIGNING, signing_pub)
    seal_id = key_id_for(agency, KeyUse.SEALING, sealing.public_bytes)
    keys = [
        DirectoryKey(
            key_id=sig_id,
            use=KeyUse.SIGNING,
            public_key=signing_pub,
            not_before=now,
            not_after=now + DEV_KEY_VALIDITY,
        ),
        DirectoryKey(
            key_id=seal_id,
            use=KeyUse.SEALING,
            suite=suite,
            public_key=sealing.public_bytes,
            not_before=now,
            not_after=now + DEV_KEY_VALIDITY,
        ),
    ]
    hub: HubSecrets | None = None
    if agency == HUB:
        log_key = HybridPrivateKey.generate()
        log_pub = log_key.public_key().public_bytes_raw()
        keys.append(
            DirectoryKey(
                key_id=key_id_for(agency, KeyUse.LOG, log_pub),
                use=KeyUse.LOG,
                public_key=log_pub,
                not_before=now,
                not_after=now + DEV_KEY_VALIDITY,
            )
        )
        hub = HubSecrets(
            log_signing_private=log_key.private_bytes_raw(),
            pseudonym_key=os.urandom(32),
            state_key=os.urandom(32),
        )
    witness: HybridPrivateKey | None = None
    witness_id: str | None = None
    if agency != HUB:  # every party agency witnesses the log, with a key of its own use
        witness = HybridPrivateKey.generate()
        witness_pub = witness.public_key().public_bytes_raw()
        witness_id = key_id_for(agency, KeyUse.WITNESS, witness_pub)
        keys.append(
            DirectoryKey(
                key_id=witness_id,
                use=KeyUse.WITNESS,
                public_key=witness_pub,
                not_before=now,
                not_after=now + DEV_KEY_VALIDITY,
            )
        )
    nats_seed = new_nkey_seed()
    keyfile = PrivateKeyFile(
        agency=agency,
        signing_private=signing.private_bytes_raw(),
        signing_key_id=sig_id,
        sealing_suite=suite,
        sealing_private=sealing.private_bytes,
        sealing_key_id=seal_id,
        witness_private=witness.private_bytes_raw() if witness is not None else None,
        witness_key_id=witness_id,
        nats_seed=nats_seed,
        hub=hub,
    )
    entry = AgencyEntry(agency=agency, nats_user=nkey_public(nats_seed), keys=tuple(keys))
    return GeneratedAgency(keyfile, entry)


#: The agencies ``keys/dev`` holds keys for; any other joins as agency IT would.
DEV_AGENCIES: tuple[AgencyId, ...] = ("police", "school", "social")


def generate_dev_keys(
    keys_dir: Path,
    *,
    now: datetime,
    suite: SuiteId = DEFAULT_SUITE,
    agencies: tuple[AgencyId, ...] = DEV_AGENCIES,
) -> None:
    """Regenerate every development key, the root key and the signed directory."""
    keys_dir.mkdir(parents=True, exist_ok=True)
    entries = []
    for agency in (HUB, *agencies):
        generated = generate_agency(agency, now=now, suite=suite)
        write_private(
            private_key_path(keys_dir, agency), generated.keyfile.model_dump_json(indent=2).encode()
        )
        entries.append(generated.entry)
    (keys_dir / DEV_MARKER).write_text(
        "These keys are public (committed or freely regenerated): never protect real data.\n"
    )
    root = init_root(keys_dir, now=now)
    (keys_dir / DIRECTORY_FILE).unlink(missing_ok=True)
    # A new root starts a new history: the serial trusted under the old one is void.
    (keys_dir / DIRECTORY_STATE_FILE).unlink(missing_ok=True)
    directory = Directory(
        serial=1, issued_at=now, expires_at=now + DEV_KEY_VALIDITY, agencies=tuple(entries)
    )
    save_directory(keys_dir, directory, root)
    generate_dev_pki(keys_dir, (HUB, *agencies), now=now, validity=DEV_KEY_VALIDITY)
    new_auditor(keys_dir)
    issue_dev_client_cert(keys_dir, AUDITOR, now=now, validity=DEV_KEY_VALIDITY)


def new_auditor(keys_dir: Path) -> str:
    """A new read-only auditor identity: its NATS seed (0600, for the compliance
    officer's machine) and public nkey (for the hub's server configuration, which
    gives it read access to the log and checkpoints and nothing else)."""
    seed = new_nkey_seed()
    write_private(keys_dir / AUDITOR_SEED_FILE, (seed + "\n").encode())
    public = nkey_public(seed)
    (keys_dir / AUDITOR_PUBLIC_FILE).write_text(public + "\n")
    return public


def auditor_seed(keys_dir: Path) -> str:
    path = keys_dir / AUDITOR_SEED_FILE
    if not path.exists():
        raise ConfigError(
            f"no auditor identity in {keys_dir}: create one with `sigbus keys auditor`"
        )
    return read_private(path).decode().strip()


def root_key_path(keys_dir: Path, holder: AgencyId) -> Path:
    return keys_dir / f"root.{holder}.key.json"


def init_root(
    keys_dir: Path,
    *,
    now: datetime,
    holders: tuple[AgencyId, ...] = DEV_ROOT_HOLDERS,
    threshold: int = DEV_ROOT_THRESHOLD,
    validity: timedelta = DEV_KEY_VALIDITY,
) -> RootSigners:
    """A new root (version 1): one hybrid key per holder (``root.<holder>.key.json``,
    0600), the threshold, the hub required, signed by every holder (``root.json``)."""
    signers = [(holder, HybridPrivateKey.generate()) for holder in holders]
    root = Root(
        version=1,
        expires_at=now + validity,
        keys=tuple(_root_key(holder, key) for holder, key in signers),
        threshold=threshold,
        required_holders=(HUB,),
    )
    for holder, key in signers:
        save_root_key(root_key_path(keys_dir, holder), holder, key)
    (keys_dir / ROOT_FILE).write_text(sign_root(root, signers).model_dump_json(indent=2) + "\n")
    for legacy in LEGACY_ROOT_FILES:
        (keys_dir / legacy).unlink(missing_ok=True)
    return signers


def _root_key(holder: AgencyId, key: HybridPrivateKey) -> RootKey:
    public = key.public_key().public_bytes_raw()
    return RootKey(key_id=root_key_id_for(holder, public), holder=holder, public_key=public)


def save_root_key(path: Path, holder: AgencyId, key: HybridPrivateKey) -> None:
    data = RootKeyFile(holder=holder, root_private=key.private_bytes_raw())
    write_private(path, data.model_dump_json(indent=2).encode())


def load_root_key(path: Path) -> tuple[AgencyId, HybridPrivateKey]:
    """One holder's root key file."""
    try:
        parsed = RootKeyFile.model_validate_json(read_private(path))
        return parsed.holder, HybridPrivateKey.from_private_bytes(parsed.root_private)
    except (ValidationError, ValueError) as e:
        raise ConfigError(f"root key file {path.name} is malformed") from e


def load_root_private(keys_dir: Path) -> RootSigners:
    """Every root key file in ``keys_dir`` (a development directory holds them all; a
    real hub holds only its own, and the other holders sign on their own machines)."""
    paths = sorted(keys_dir.glob("root.*.key.json"))
    if not paths:
        raise ConfigError(f"no root key file (root.<holder>.key.json) in {keys_dir}")
    return [load_root_key(p) for p in paths]


def load_signed_root(keys_dir: Path) -> SignedRoot:
    return parse_signed_root(read_file(keys_dir / ROOT_FILE))


def _previous_signed(keys_dir: Path) -> SignedDirectory | None:
    path = keys_dir / DIRECTORY_FILE
    if not path.exists():
        return None
    try:
        return parse_signed_directory(read_file(path))
    except DirectoryError:
        return None


def _chain(previous: SignedDirectory | None, newest: SignedRoot) -> tuple[SignedRoot, ...]:
    by_version = {r.root.version: r for r in (previous.roots if previous else ())}
    by_version[newest.root.version] = newest
    return tuple(by_version[v] for v in sorted(by_version) if v <= newest.root.version)


class DirectoryPending(ConfigError):
    """The signed directory still lacks root signatures or endorsements: it was written
    to ``directory.pending.json``, not put in force."""


def _missing(
    keys_dir: Path, signed: SignedDirectory, now: datetime, *, signatures_only: bool = False
) -> str | None:
    """What keeps ``signed`` from being trusted after the directory in force, or ``None``;
    ``signatures_only``: only missing root signatures or endorsements count (what
    another holder or agency can still add)."""
    current = keys_dir / DIRECTORY_FILE
    state = None
    if current.exists():
        in_force = parse_signed_directory(read_file(current)).directory
        state = DirectoryState(
            serial=in_force.serial, digest=directory_digest(in_force), directory=in_force
        )
    trusted = TrustedDirectory(_pinned_root(keys_dir), state)
    try:
        trusted.update(signed.model_dump_json().encode(), now)
    except DirectoryRefused as e:
        if signatures_only and not e.kind.startswith(("root_", "unendorsed_")):
            return None
        return str(e)
    return None


def save_directory(
    keys_dir: Path, directory: Directory, signers: RootSigners, *, now: datetime | None = None
) -> SignedDirectory:
    """Sign ``directory`` with ``signers`` and write it: root signatures already made over
    the same content are kept, and so are endorsements of entries that did not change.
    In a development keys directory every agency whose keys changed endorses with the
    key file beside it (the dev keys stand in for every agency's IT).

    Written as ``directory.json`` if it is trusted after the directory in force (root
    threshold, endorsements); else as ``directory.pending.json`` and
    :class:`DirectoryPending` says what is missing."""
    previous = _previous_signed(keys_dir)
    signed = carry_endorsements(
        previous,
        sign_directory(
            directory, _chain(previous, load_signed_root(keys_dir)), signers, onto=previous
        ),
    )
    if previous is not None and (keys_dir / DEV_MARKER).exists():
        signed = _dev_endorse(keys_dir, previous.directory, signed)
    missing = _missing(keys_dir, signed, now or datetime.now(UTC), signatures_only=True)
    if missing is not None:
        _write_signed(keys_dir / PENDING_DIRECTORY_FILE, signed)
        raise DirectoryPending(missing)
    _write_signed(keys_dir / DIRECTORY_FILE, signed)
    (keys_dir / PENDING_DIRECTORY_FILE).unlink(missing_ok=True)
    return signed


def _write_signed(path: Path, signed: SignedDirectory) -> None:
    path.write_text(signed.model_dump_json(indent=2) + "\n")


def _pending(keys_dir: Path) -> SignedDirectory:
    path = keys_dir / PENDING_DIRECTORY_FILE
    if not path.exists():
        raise ConfigError(f"no pending directory ({PENDING_DIRECTORY_FILE}) in {keys_dir}")
    return parse_signed_directory(read_file(path))


def sign_pending(keys_dir: Path, holder: AgencyId, key: HybridPrivateKey) -> str | None:
    """Add a root key holder's signature to the pending directory; what is still missing."""
    pending = _pending(keys_dir)
    signed = sign_directory(pending.directory, pending.roots, [(holder, key)], onto=pending)
    _write_signed(keys_dir / PENDING_DIRECTORY_FILE, signed)
    return _missing(keys_dir, signed, datetime.now(UTC))


def endorse_pending(keys_dir: Path, keyfile: PrivateKeyFile) -> str | None:
    """Add an agency's endorsement (its signing key in force) to the pending directory."""
    pending = _pending(keys_dir)
    key = HybridPrivateKey.from_private_bytes(keyfile.signing_private)
    signed = endorse(pending, keyfile.agency, keyfile.signing_key_id, key)
    _write_signed(keys_dir / PENDING_DIRECTORY_FILE, signed)
    return _missing(keys_dir, signed, datetime.now(UTC))


def publish_pending(keys_dir: Path, *, now: datetime) -> int:
    """Put the pending directory in force if it is trusted after the one in force."""
    pending = _pending(keys_dir)
    missing = _missing(keys_dir, pending, now)
    if missing is not None:
        raise ConfigError(f"not published: {missing}")
    os.replace(keys_dir / PENDING_DIRECTORY_FILE, keys_dir / DIRECTORY_FILE)
    return pending.directory.serial


def rotate_root(
    keys_dir: Path,
    old_signers: RootSigners,
    *,
    holders: tuple[AgencyId, ...],
    threshold: int,
    out: Path,
    now: datetime,
    validity: timedelta = DEV_KEY_VALIDITY,
) -> SignedRoot:
    """Root version n + 1 with new keys for ``holders``, signed by ``old_signers`` (a
    threshold of version n) and every new key; the directory is re-signed under it."""
    current = load_signed_root(keys_dir)
    directory = load_directory(keys_dir, now=now)
    new_signers = [(holder, HybridPrivateKey.generate()) for holder in holders]
    root = Root(
        version=current.root.version + 1,
        expires_at=now + validity,
        keys=tuple(_root_key(h, k) for h, k in new_signers),
        threshold=threshold,
        required_holders=(HUB,) if HUB in holders else (),
    )
    signed = sign_root(root, [*old_signers, *new_signers])
    verify_root_step(current.root, signed)  # refused here, before anything is written
    out.mkdir(parents=True, exist_ok=True)
    for holder, key in new_signers:
        save_root_key(root_key_path(out, holder), holder, key)
    (keys_dir / ROOT_FILE).write_text(signed.model_dump_json(indent=2) + "\n")
    save_directory(keys_dir, directory, new_signers, now=now)
    return signed


def _dev_endorse(keys_dir: Path, previous: Directory, signed: SignedDirectory) -> SignedDirectory:
    for entry in previous.agencies:
        path = private_key_path(keys_dir, entry.agency)
        if not path.exists():
            continue
        try:
            keyfile = load_private_file(path, None)
        except ConfigError:
            continue  # an encrypted file: its agency endorses by hand (`keys endorse`)
        if any(k.key_id == keyfile.signing_key_id for k in entry.keys):
            key = HybridPrivateKey.from_private_bytes(keyfile.signing_private)
            signed = endorse(signed, entry.agency, keyfile.signing_key_id, key)
    return signed


def dev_witness_keys(
    keys_dir: Path, directory: Directory
) -> list[tuple[AgencyId, HybridPrivateKey]]:
    """In a development keys directory, every party agency's witness key found here (the
    dev keys stand in for every agency's IT, as for endorsements); elsewhere none."""
    if not (keys_dir / DEV_MARKER).exists():
        return []
    found: list[tuple[AgencyId, HybridPrivateKey]] = []
    for entry in directory.agencies:
        path = private_key_path(keys_dir, entry.agency)
        if entry.agency == HUB or not path.exists():
            continue
        try:
            keyfile = load_private_file(path, None)
        except ConfigError:
            continue  # an encrypted file: its agency cosigns by hand
        if keyfile.witness_private is not None:
            found.append(
                (entry.agency, HybridPrivateKey.from_private_bytes(keyfile.witness_private))
            )
    return found


def log_in_force(keys_dir: Path, *, now: datetime) -> DirectoryLogProof:
    """Hub: the directory in force appended to the directory log, signed with the hub's
    log key (``transport/dirlog_files.py``)."""
    hub = load_private(keys_dir, HUB)
    if hub.hub is None:
        raise ConfigError("the hub's key file holds no log key")
    directory = load_directory(keys_dir, now=now)
    return log_published(
        keys_dir,
        directory,
        HybridPrivateKey.from_private_bytes(hub.hub.log_signing_private),
        witnesses=dev_witness_keys(keys_dir, directory),
        now=now,
    )


def load_private(keys_dir: Path, agency: AgencyId) -> PrivateKeyFile:
    """An agency's private keys; an encrypted file takes its passphrase from
    ``SIGBUS_KEY_PASSPHRASE`` (set by the service manager, never on a command line)."""
    path = private_key_path(keys_dir, agency)
    keyfile = load_private_file(path, os.environ.get(PASSPHRASE_ENV))
    if keyfile.agency != agency:
        raise ConfigError(f"private key file {path.name} belongs to another agency")
    return keyfile


def _pinned_root(keys_dir: Path) -> bytes:
    return read_file(keys_dir / ROOT_FILE)


def load_directory(keys_dir: Path, *, now: datetime | None = None) -> Directory:
    """Load the directory and verify it against the pinned root (a threshold of root
    signatures only: what the hub operator edits, and what a new server configuration
    is made of). A hub or adapter that *uses* it goes through
    :func:`load_trusted_directory`, which also checks the endorsements."""
    return verify_directory(
        read_file(keys_dir / DIRECTORY_FILE), _pinned_root(keys_dir), now or datetime.now(UTC)
    )


def _state_path(keys_dir: Path) -> Path:
    return Path(os.environ.get(STATE_DIR_ENV) or keys_dir) / DIRECTORY_STATE_FILE


def _read_state(keys_dir: Path) -> DirectoryState | None:
    path = _state_path(keys_dir)
    if not path.exists():
        return None
    try:
        return DirectoryState.model_validate_json(read_file(path))
    except ValidationError as e:
        raise ConfigError(f"{DIRECTORY_STATE_FILE} is malformed: restore it from a backup") from e


def _save_state(keys_dir: Path, state: DirectoryState, before: DirectoryState | None) -> None:
    """Atomically (a unique temporary file, then rename): several processes may share
    a keys directory (the hub and `sigbus up`, or an agency's CLI beside its adapter)."""
    if state == before:
        return
    path = _state_path(keys_dir)
    try:
        with tempfile.NamedTemporaryFile(
            "w", dir=path.parent, prefix=".directory-state.", delete=False
        ) as tmp:
            tmp.write(state.model_dump_json() + "\n")
        os.replace(tmp.name, path)
    except OSError as e:
        raise ConfigError(
            f"cannot record the trusted directory serial in {path.parent}: make the keys "
            f"directory writable by this service, or set {STATE_DIR_ENV} to a folder that is"
        ) from e


def _alarm_own_keys(
    e: DirectoryRefused, agency: AgencyId | None, serial: int | None, current: int | None
) -> None:
    """The alarm of an adapter whose own agency's keys a directory changed without its
    endorsement: a hub or root key holders acting alone (the directory is refused)."""
    if e.kind == "unendorsed_key_change" and agency is not None and agency in e.agencies:
        log.error(
            "security_event",
            kind="directory_own_keys_changed_unendorsed",
            agency=agency,
            serial=serial,
            current_serial=current,
        )


def _serial_of(path: Path) -> int | None:
    try:
        return parse_signed_directory(read_file(path)).directory.serial
    except (ConfigError, ProtocolError):
        return None


def load_trusted_directory(
    keys_dir: Path, *, now: datetime, agency: AgencyId | None = None
) -> TrustedDirectory:
    """The directory a hub or adapter may use now: verified against the pinned root,
    not older than (nor, at the same serial, different from) the last one this party
    trusted, and not expired. The accepted serial is recorded before it is used.
    ``agency``: the adapter's own, whose unendorsed key change raises its own alarm."""
    before = _read_state(keys_dir)
    trusted = TrustedDirectory(_pinned_root(keys_dir), before)
    try:
        trusted.update(read_file(keys_dir / DIRECTORY_FILE), now)
    except DirectoryRefused as e:
        log.error("security_event", kind=e.kind, agencies=list(e.agencies))
        _alarm_own_keys(
            e,
            agency,
            _serial_of(keys_dir / DIRECTORY_FILE),
            before.serial if before is not None else None,
        )
        raise ConfigError(str(e)) from e
    assert trusted.state is not None
    _save_state(keys_dir, trusted.state, before)
    return trusted


class DirectoryWatcher:
    """The signed directory as it is *now*: re-read when the file changes.

    Revocations and rotations take effect in a running hub and adapter without a
    restart. A new file is used only if :class:`TrustedDirectory` accepts it
    (pinned root, serial not going back, not expired); otherwise the last good
    directory stays in force and the refusal is logged as a security event. A
    directory that expires while in use is reported when it does
    (``kind=directory_expired``); the hub then stops deciding until a fresh one
    arrives (``broker/service.py``).
    """

    def __init__(
        self, keys_dir: Path, trusted: TrustedDirectory, *, agency: AgencyId | None = None
    ) -> None:
        assert trusted.directory is not None, "a watcher starts from a trusted directory"
        self._agency = agency  # whose own keys an unendorsed change must raise an alarm for
        self._keys_dir = keys_dir
        self._path = keys_dir / DIRECTORY_FILE
        self._stamp = self._stat()
        self._trusted = trusted
        self.current: Directory = trusted.directory
        self._expired_reported = False

    def _stat(self) -> tuple[int, int] | None:
        try:
            st = self._path.stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def refresh(self, now: datetime | None = None) -> Directory:
        now = now or datetime.now(UTC)
        stamp = self._stat()
        if stamp is not None and stamp != self._stamp:
            self._stamp = stamp
            self._take(now)
        expired = self.current.expired_at(now)
        if expired and not self._expired_reported:
            log.error("security_event", kind="directory_expired", serial=self.current.serial)
        self._expired_reported = expired
        return self.current

    def _take(self, now: datetime) -> None:
        before = self._trusted.state
        try:
            raw = read_file(self._path)
        except ConfigError as e:
            log.error("security_event", kind="directory_rejected", error=type(e).__name__)
            return
        if self._agency is not None:
            reason = unlogged_reason(self._keys_dir, self._agency, raw)
            if reason is not None:
                log.error(
                    "security_event",
                    kind="directory_not_logged",
                    serial=_serial_of(self._path),
                    current_serial=self.current.serial,
                    reason=reason,
                )
                return
        try:
            candidate = self._trusted.update(raw, now)
        except DirectoryRefused as e:
            log.error(
                "security_event",
                kind=e.kind,
                agencies=list(e.agencies),
                current_serial=self.current.serial,
            )
            _alarm_own_keys(e, self._agency, _serial_of(self._path), self.current.serial)
            return
        except (ConfigError, ProtocolError) as e:
            log.error("security_event", kind="directory_rejected", error=type(e).__name__)
            return
        assert self._trusted.state is not None
        _save_state(self._keys_dir, self._trusted.state, before)
        if candidate != self.current:
            log.info("directory_reloaded", serial=candidate.serial)
        self.current = candidate


def join_dev_agency(keys_dir: Path, agency: AgencyId, *, now: datetime) -> None:
    """A new agency joins a development deployment in ``keys_dir``: what agency IT does
    (``sigbus keys generate``) and what the hub does (``sigbus keys add``), in one step,
    plus a client certificate from the development CA. No code knows the agency."""
    generated = generate_agency(agency, now=now)
    write_private(
        private_key_path(keys_dir, agency), generated.keyfile.model_dump_json(indent=2).encode()
    )
    directory = add_agency(
        load_directory(keys_dir),
        public_bundle(generated.keyfile),
        not_before=now - timedelta(minutes=5),
        not_after=now + DEV_KEY_VALIDITY,
        now=now,
    )
    save_directory(keys_dir, directory, load_root_private(keys_dir))
    issue_dev_client_cert(
        keys_dir, agency, now=now - timedelta(minutes=5), validity=DEV_KEY_VALIDITY
    )
