"""``sigbus keys``: agency keys and the signed agency directory, for agency IT and the hub.

The hub, once: ``init`` (a new root key, the hub's identity, a signed directory).
Agency IT: ``generate`` (private key file, 0600, optionally passphrase-encrypted)
and ``public`` (the public part to hand to the hub). The hub: ``add``,
``rotate``, ``revoke`` (edit, re-sign with the root key, bump the serial) and
``show`` (verify against the pinned root and print). See ``docs/keys.md``.

Exit codes: 0 success, 2 bad input (a clear message, never key material).
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from sigbus.protocol.directory import DIRECTORY_VALIDITY, Directory
from sigbus.protocol.envelope import describe_invalid
from sigbus.protocol.errors import ProtocolError
from sigbus.protocol.ids import HUB, agency_name
from sigbus.protocol.sealing import DEFAULT_SUITE, SuiteId
from sigbus.protocol.signing import HybridPrivateKey
from sigbus.transport.dirlog_files import DIRECTORY_LOG_FILE, cosign_directory_log
from sigbus.transport.errors import SigbusError
from sigbus.transport.files import write_private
from sigbus.transport.keyring import (
    PublicBundle,
    add_agency,
    directory_rows,
    encrypt_keyfile,
    load_private_file,
    public_bundle,
    renew_directory,
    revoke_key,
    rotate_keys,
)
from sigbus.transport.keystore import (
    DEV_KEY_VALIDITY,
    DEV_KEYS_DIR,
    DIRECTORY_FILE,
    PENDING_DIRECTORY_FILE,
    ROOT_FILE,
    DirectoryPending,
    RootSigners,
    endorse_pending,
    generate_agency,
    generate_dev_keys,
    init_root,
    load_directory,
    load_root_key,
    load_root_private,
    log_in_force,
    new_auditor,
    private_key_path,
    publish_pending,
    rotate_root,
    save_directory,
    sign_pending,
)
from sigbus.transport.natsauth import AUDITOR, AUDITOR_SEED_FILE, CA_KEY, issue_dev_client_cert
from sigbus.transport.natsserver import (
    COMPOSE_CERT_DIR,
    render_compose_configs,
    render_config,
    server_settings,
)

keys_app = typer.Typer(
    rich_markup_mode="markdown",
    pretty_exceptions_show_locals=False,
    help="Keys and the agency directory.",
    no_args_is_help=True,
)

DirOpt = Annotated[
    Path,
    typer.Option(
        "--directory-dir", help="holds directory.json, root.json (and root.<holder>.key.json)"
    ),
]
PassEnvOpt = Annotated[
    str | None,
    typer.Option(
        "--passphrase-env", help="name of the environment variable holding the passphrase"
    ),
]


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(2)


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _parse_time(value: str, option: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as e:
        raise _fail(f"{option} is not an ISO 8601 date-time") from e
    if parsed.tzinfo is None:
        raise _fail(f"{option} needs a UTC offset, e.g. 2027-01-01T00:00:00+00:00")
    return parsed


def _passphrase(env: str | None) -> str | None:
    if env is None:
        return None
    value = os.environ.get(env)
    if not value:
        raise _fail(f"environment variable {env} is not set or empty")
    return value


RootKeyOpt = Annotated[
    list[Path] | None,
    typer.Option(
        "--root-key",
        help="a root key holder's key file (repeatable; default: every root.*.key.json here)",
    ),
]


def _signers(directory_dir: Path, root_keys: list[Path] | None) -> RootSigners:
    if root_keys:
        return [load_root_key(p) for p in root_keys]
    return list(load_root_private(directory_dir))


def _log(directory_dir: Path) -> None:
    """The directory just put in force, appended to the directory log (issue #10)."""
    if not private_key_path(directory_dir, HUB).exists():
        return  # not the hub's keys directory: the hub logs it where it publishes
    proof = log_in_force(directory_dir, now=_now())
    typer.echo(
        f"directory serial {proof.leaf.serial} is entry {proof.index} of the directory log "
        f"({directory_dir / DIRECTORY_LOG_FILE})"
    )


def _save(directory_dir: Path, directory: Directory, root_keys: list[Path] | None = None) -> None:
    try:
        save_directory(directory_dir, directory, _signers(directory_dir, root_keys))
        _log(directory_dir)
    except DirectoryPending as e:
        pending = directory_dir / PENDING_DIRECTORY_FILE
        typer.echo(
            f"directory serial {directory.serial} written to {pending} but not yet in "
            f"force: {e}; add the missing signatures with `sigbus keys sign-directory` / "
            "`sigbus keys endorse`, then `sigbus keys publish`"
        )
        return
    typer.echo(f"directory serial {directory.serial} signed and written to {directory_dir}")


def _agency(value: str) -> str:
    try:
        return agency_name(value)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from e


AgencyOpt = Annotated[
    str,
    typer.Option(
        "--agency",
        callback=_agency,
        help="the agency's name in the directory, e.g. a local partner's own name",
    ),
]


def _load_bundle(path: Path) -> PublicBundle:
    try:
        return PublicBundle.model_validate_json(path.read_bytes()).checked()
    except OSError as e:
        raise _fail(f"cannot read {path}: {e.strerror}") from e
    except ValidationError as e:
        raise _fail(f"{path.name}: invalid public key bundle at {describe_invalid(e)}") from e
    except SigbusError as e:
        raise _fail(str(e)) from e


@keys_app.command("dev-generate")
def keys_dev_generate(
    out: Annotated[Path, typer.Option("--out")] = DEV_KEYS_DIR, suite: SuiteId = DEFAULT_SUITE
) -> None:
    """Regenerate DEVELOPMENT-ONLY keys and the signed directory."""
    now = datetime.now(UTC).replace(microsecond=0)
    generate_dev_keys(out, now=now - timedelta(days=365), suite=suite)
    typer.echo(f"development keys written to {out} (never use them in production)")


@keys_app.command("generate")
def keys_generate(
    agency: AgencyOpt,
    out: Annotated[Path, typer.Option("--out", help="directory to write <agency>.key.json to")],
    passphrase_env: PassEnvOpt = None,
    suite: SuiteId = DEFAULT_SUITE,
    force: Annotated[bool, typer.Option(help="replace an existing key file")] = False,
) -> None:
    """Generate an agency's signing, sealing and NATS keys (private file, mode 0600)."""
    if agency == HUB:
        raise _fail("the hub's keys come from `sigbus keys init`")
    passphrase = _passphrase(passphrase_env)
    out.mkdir(parents=True, exist_ok=True)
    path = private_key_path(out, agency)
    if path.exists() and not force:
        raise _fail(f"{path} exists: pass --force to replace it")
    keyfile = generate_agency(agency, now=_now(), suite=suite).keyfile
    if passphrase is None:
        data = keyfile.model_dump_json(indent=2).encode()
    else:
        data = encrypt_keyfile(keyfile, passphrase).model_dump_json(indent=2).encode()
    write_private(path, data)
    typer.echo(
        f"{agency} keys written to {path} (mode 0600"
        f"{', passphrase-encrypted' if passphrase else ''}); "
        f"hand `sigbus keys public --key {path}` to the hub"
    )


@keys_app.command("init")
def keys_init(
    out: Annotated[Path, typer.Option("--out", help="the hub's new keys directory")],
    passphrase_env: PassEnvOpt = None,
    suite: SuiteId = DEFAULT_SUITE,
) -> None:
    """Hub, once: a new root key, the hub's identity and a signed directory listing only it.

    Agencies join with `sigbus keys generate` (at the agency) and `sigbus keys add`
    (here). TLS certificates come from the municipality's own CA (docs/keys.md).
    """
    passphrase = _passphrase(passphrase_env)
    out.mkdir(parents=True, exist_ok=True)
    existing = [n for n in (DIRECTORY_FILE, ROOT_FILE, f"{HUB}.key.json") if (out / n).exists()]
    if existing:
        raise _fail(f"{out} already holds {', '.join(existing)}: refusing to replace a root")
    now = _now()
    generated = generate_agency(HUB, now=now, suite=suite)
    keyfile = generated.keyfile
    data = (
        keyfile.model_dump_json(indent=2).encode()
        if passphrase is None
        else encrypt_keyfile(keyfile, passphrase).model_dump_json(indent=2).encode()
    )
    write_private(private_key_path(out, HUB), data)
    root = init_root(out, now=now, holders=(HUB,), threshold=1)
    first = Directory(
        serial=1, issued_at=now, expires_at=now + DIRECTORY_VALIDITY, agencies=(generated.entry,)
    )
    save_directory(out, first, root)
    typer.echo(
        f"new root (version 1, held by the hub alone), hub identity and directory (serial 1) "
        f"written to {out}; keep root.{HUB}.key.json offline, hand {ROOT_FILE} to every "
        "agency, and share the root with the other holders (`sigbus keys rotate-root`)"
    )


@keys_app.command("nats-config")
def keys_nats_config(
    directory_dir: DirOpt,
    cert_dir: Annotated[
        str, typer.Option(help="where the server finds ca.crt, nats-server.crt and .key")
    ] = COMPOSE_CERT_DIR,
    out: Annotated[Path | None, typer.Option("--out", help="write here (default stdout)")] = None,
    compose_dir: Annotated[
        Path | None,
        typer.Option(
            "--compose-dir",
            help="write docker-compose's three cluster nodes' configurations here "
            "(nats-1.conf … nats-3.conf) instead",
        ),
    ] = None,
) -> None:
    """Render the nats-server configuration from the signed directory (users, TLS).

    Run it again after every `keys add`, `rotate` or `revoke`, then reload the
    server (`nats-server --signal reload`, or SIGHUP): nobody else restarts.
    """
    try:
        if compose_dir is not None:
            compose_dir.mkdir(parents=True, exist_ok=True)
            for path, node_text in render_compose_configs(directory_dir).items():
                (compose_dir / path.name).write_text(node_text)
                typer.echo(f"nats-server configuration written to {compose_dir / path.name}")
            return
        text = render_config(server_settings(directory_dir, cert_dir=cert_dir))
    except OSError as e:
        raise _fail(f"cannot write the configuration: {e.strerror}: {e.filename}") from e
    except (SigbusError, ProtocolError) as e:
        raise _fail(str(e)) from e
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.write_text(text)
        typer.echo(f"nats-server configuration written to {out}")


@keys_app.command("auditor")
def keys_auditor(
    out: Annotated[Path, typer.Option("--out", help="keys directory to write the identity to")],
    force: Annotated[bool, typer.Option(help="replace an existing auditor identity")] = False,
) -> None:
    """Create the read-only auditor identity that `sigbus audit export` connects as.

    The auditor may read the disclosure log and its checkpoints and nothing else:
    no inbox, no ingress, no hub state, no consumer. Its seed (auditor.nkey, 0600)
    belongs on the compliance officer's machine; auditor.nkey.pub goes into the
    hub's nats-server configuration (`sigbus keys nats-config`, then reload).
    """
    if (out / AUDITOR_SEED_FILE).exists() and not force:
        raise _fail(f"{out / AUDITOR_SEED_FILE} exists: pass --force to replace it")
    out.mkdir(parents=True, exist_ok=True)
    public = new_auditor(out)
    if (out / CA_KEY).exists():  # a development CA: issue the client certificate too
        issue_dev_client_cert(out, AUDITOR, now=_now(), validity=DEV_KEY_VALIDITY)
    typer.echo(
        f"auditor identity {public} written to {out}; render the server configuration "
        "again (`sigbus keys nats-config`) and reload the server"
    )


@keys_app.command("public")
def keys_public(
    key: Annotated[Path, typer.Option("--key", help="private key file")],
    passphrase_env: PassEnvOpt = None,
) -> None:
    """Print the public part of a key file as JSON, to hand to the hub."""
    try:
        keyfile = load_private_file(key, _passphrase(passphrase_env))
        typer.echo(public_bundle(keyfile).model_dump_json(indent=2))
    except SigbusError as e:
        raise _fail(str(e)) from e


@keys_app.command("add")
def keys_add(
    directory_dir: DirOpt,
    public: Annotated[Path, typer.Option("--public", help="bundle from `sigbus keys public`")],
    not_before: Annotated[str, typer.Option("--not-before", help="ISO 8601 with offset")],
    not_after: Annotated[str, typer.Option("--not-after", help="ISO 8601 with offset")],
    root_key: RootKeyOpt = None,
) -> None:
    """Hub: add a new agency's keys to the directory and re-sign it."""
    bundle = _load_bundle(public)
    try:
        directory = load_directory(directory_dir)
        updated = add_agency(
            directory,
            bundle,
            not_before=_parse_time(not_before, "--not-before"),
            not_after=_parse_time(not_after, "--not-after"),
            now=_now(),
        )
        _save(directory_dir, updated, root_key)
    except (SigbusError, ProtocolError) as e:
        raise _fail(str(e)) from e


@keys_app.command("rotate")
def keys_rotate(
    directory_dir: DirOpt,
    public: Annotated[Path, typer.Option("--public", help="bundle of the agency's new keys")],
    not_before: Annotated[str, typer.Option("--not-before", help="ISO 8601 with offset")],
    not_after: Annotated[str, typer.Option("--not-after", help="ISO 8601 with offset")],
    retire_old_at: Annotated[
        str | None,
        typer.Option("--retire-old-at", help="end the overlap: old keys expire then"),
    ] = None,
    root_key: RootKeyOpt = None,
) -> None:
    """Hub: add an agency's new keys alongside its current ones (overlap)."""
    bundle = _load_bundle(public)
    try:
        directory = load_directory(directory_dir)
        updated = rotate_keys(
            directory,
            bundle,
            not_before=_parse_time(not_before, "--not-before"),
            not_after=_parse_time(not_after, "--not-after"),
            retire_old_at=_parse_time(retire_old_at, "--retire-old-at") if retire_old_at else None,
            now=_now(),
        )
        _save(directory_dir, updated, root_key)
    except (SigbusError, ProtocolError) as e:
        raise _fail(str(e)) from e


@keys_app.command("revoke")
def keys_revoke(
    directory_dir: DirOpt,
    key_id: Annotated[str, typer.Option("--key-id")],
    at: Annotated[str, typer.Option("--at", help="revoked from this ISO 8601 time on")],
    root_key: RootKeyOpt = None,
) -> None:
    """Hub: revoke a key from a given time on (signatures refused, nothing sealed to it)."""
    try:
        directory = load_directory(directory_dir)
        updated = revoke_key(directory, key_id, at=_parse_time(at, "--at"), now=_now())
        _save(directory_dir, updated, root_key)
    except (SigbusError, ProtocolError) as e:
        raise _fail(str(e)) from e


@keys_app.command("renew")
def keys_renew(directory_dir: DirOpt, root_key: RootKeyOpt = None) -> None:
    """Hub: sign the directory again, unchanged, with the next serial and a fresh expiry.

    Every party refuses an expired directory, so a withheld revocation is noticed:
    renew well before `expires` (`sigbus keys show`), e.g. weekly from cron."""
    try:
        updated = renew_directory(load_directory(directory_dir), now=_now())
        _save(directory_dir, updated, root_key)
    except (SigbusError, ProtocolError) as e:
        raise _fail(str(e)) from e
    typer.echo(
        f"directory serial {updated.serial} signed, in force until {updated.expires_at.isoformat()}"
    )


@keys_app.command("show")
def keys_show(
    directory_dir: DirOpt,
    at: Annotated[str | None, typer.Option("--at", help="status as of (default now)")] = None,
) -> None:
    """Verify the directory against the pinned root key and print it as a table."""
    when = _parse_time(at, "--at") if at else _now()
    try:
        directory = load_directory(directory_dir)
    except (SigbusError, ProtocolError) as e:
        raise _fail(str(e)) from e
    typer.echo(
        f"directory serial {directory.serial}, issued {directory.issued_at.isoformat()}, "
        f"expires {directory.expires_at.isoformat()}"
        f"{' (EXPIRED: run `sigbus keys renew`)' if directory.expired_at(when) else ''}, "
        "signature verified"
    )
    header = ("AGENCY", "KEY ID", "USE", "NOT BEFORE", "NOT AFTER", "STATUS")
    rows = [header] + [
        (
            r.agency,
            r.key_id,
            r.use.value,
            r.not_before.isoformat(),
            r.not_after.isoformat(),
            r.status,
        )
        for r in directory_rows(directory, at=when)
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        typer.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


PendingArg = Annotated[
    Path,
    typer.Argument(help="the keys directory holding directory.pending.json", file_okay=False),
]


@keys_app.command("sign-directory")
def keys_sign_directory(
    directory_dir: PendingArg,
    root_key: Annotated[Path, typer.Option("--root-key", help="your root key file")],
) -> None:
    """A root key holder: add your signature to the pending directory."""
    try:
        holder, key = load_root_key(root_key)
        missing = sign_pending(directory_dir, holder, key)
    except (SigbusError, ProtocolError) as e:
        raise _fail(str(e)) from e
    typer.echo(f"signed by {holder}; {missing or 'ready: run `sigbus keys publish`'}")


@keys_app.command("endorse")
def keys_endorse(
    directory_dir: PendingArg,
    agency: AgencyOpt,
    key: Annotated[Path, typer.Option("--key", help="the agency's private key file")],
    passphrase_env: PassEnvOpt = None,
) -> None:
    """Agency IT: endorse your agency's new entry in the pending directory, with the
    signing key of the directory now in force (the change is refused without it)."""
    try:
        keyfile = load_private_file(key, _passphrase(passphrase_env))
        if keyfile.agency != agency:
            raise _fail(f"{key.name} belongs to another agency")
        missing = endorse_pending(directory_dir, keyfile)
    except (SigbusError, ProtocolError) as e:
        raise _fail(str(e)) from e
    typer.echo(f"endorsed by {agency}; {missing or 'ready: run `sigbus keys publish`'}")


@keys_app.command("cosign-directory-log")
def keys_cosign_directory_log(
    directory_dir: DirOpt,
    agency: AgencyOpt,
    key: Annotated[Path, typer.Option("--key", help="the agency's private key file")],
    passphrase_env: PassEnvOpt = None,
) -> None:
    """Agency IT: cosign the directory log's newest checkpoint (directory-log.json, as
    the hub published it with directory.json) with your agency's witness key.

    Only after checking that the directory is the one you trust (signed by the root
    threshold you pinned, your own keys unchanged or endorsed by you) and that the log
    only grew since you last cosigned (your directory-log-witness.<agency>.json). A
    rewritten log is refused and nothing is cosigned. Pass the file on to the next
    agency, then back to the hub."""
    now = _now()
    try:
        keyfile = load_private_file(key, _passphrase(passphrase_env))
        if keyfile.agency != agency:
            raise _fail(f"{key.name} belongs to another agency")
        if keyfile.witness_private is None:
            raise _fail(f"{key.name} holds no witness key")
        witness_key = HybridPrivateKey.from_private_bytes(keyfile.witness_private)
        trusted = load_directory(directory_dir, now=now)
        proof = cosign_directory_log(directory_dir, agency, witness_key, trusted, now=now)
    except (SigbusError, ProtocolError) as e:
        raise _fail(str(e)) from e
    typer.echo(
        f"directory log cosigned by {agency}: serial {proof.leaf.serial}, "
        f"entry {proof.index} ({directory_dir / DIRECTORY_LOG_FILE})"
    )


@keys_app.command("publish")
def keys_publish(directory_dir: PendingArg) -> None:
    """Hub: check the pending directory against the one in force (root threshold,
    endorsements, serial, expiry) and install it; refused with the reason otherwise."""
    try:
        serial = publish_pending(directory_dir, now=_now())
        _log(directory_dir)
    except (SigbusError, ProtocolError) as e:
        raise _fail(str(e)) from e
    typer.echo(f"directory serial {serial} published in {directory_dir / DIRECTORY_FILE}")


@keys_app.command("rotate-root")
def keys_rotate_root(
    directory_dir: DirOpt,
    old_key: Annotated[
        list[Path], typer.Option("--old-key", help="a current root key file (repeatable)")
    ],
    holder: Annotated[
        list[str], typer.Option("--holder", help="a holder of the new root (repeatable)")
    ],
    threshold: Annotated[int, typer.Option(help="distinct holders the new root needs")],
    out: Annotated[Path, typer.Option("--out", help="where the new root key files go")],
) -> None:
    """The root key holders: a new root version (new keys for ``--holder``), signed by a
    threshold of the current keys and of the new ones; re-signs the directory under it."""
    try:
        signed = rotate_root(
            directory_dir,
            [load_root_key(p) for p in old_key],
            holders=tuple(_agency(h) for h in holder),
            threshold=threshold,
            out=out,
            now=_now(),
        )
    except (SigbusError, ProtocolError, ValueError) as e:
        raise _fail(str(e)) from e
    typer.echo(
        f"root version {signed.root.version} written to {directory_dir / ROOT_FILE}; "
        f"new root key files in {out}: hand each to its holder"
    )
