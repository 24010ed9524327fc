"""The directory log as files beside ``directory.json`` (issue #10; rules in audit/dirlog.py).

Directories travel as files (the key administrator copies ``directory.json`` to every
keys directory), so the directory log travels with them:

- ``directory-log.json``: the newest directory's leaf, its inclusion proof and the
  directory-log checkpoint with the witnesses' cosignatures (what every party reads);
- ``directory-log.leaves.json``: every leaf so far (the hub's, to extend the tree);
- ``directory-log-witness.<agency>.json``: an agency's witness state (the checkpoint it
  cosigned last), so it never cosigns a rewritten log.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import structlog
from pydantic import TypeAdapter, ValidationError

from sigbus.audit.checkpoint import (
    PublicKey,
    add_signature_lines,
    load_public_key,
    note_body,
    parse_checkpoint_body,
    sign_note,
)
from sigbus.audit.dirlog import (
    DIRECTORY_LOG_ORIGIN,
    DirectoryLeaf,
    DirectoryLog,
    DirectoryLogProof,
    DirectoryWitness,
    check_directory_logged,
    parse_directory_log_proof,
)
from sigbus.audit.errors import AuditError
from sigbus.audit.trust import trust_from_directory, witness_name
from sigbus.audit.witness import WitnessState
from sigbus.protocol.directory import Directory, KeyUse, parse_signed_directory
from sigbus.protocol.errors import ProtocolError
from sigbus.protocol.ids import HUB, AgencyId
from sigbus.protocol.signing import HybridPrivateKey
from sigbus.transport.errors import ConfigError
from sigbus.transport.files import read_file

log = structlog.get_logger(__name__)

DIRECTORY_LOG_FILE = "directory-log.json"
DIRECTORY_LOG_LEAVES_FILE = "directory-log.leaves.json"
LEAVES = TypeAdapter(list[DirectoryLeaf])


def witness_state_path(keys_dir: Path, agency: AgencyId) -> Path:
    return keys_dir / f"directory-log-witness.{agency}.json"


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def hub_log_public_key(directory: Directory) -> PublicKey:
    keys = [k for k in directory.entry(HUB).keys if k.use is KeyUse.LOG and k.revoked_at is None]
    if not keys:
        raise ConfigError("the directory names no unrevoked log key for the hub")
    return load_public_key(keys[0].public_key)


def log_published(
    keys_dir: Path,
    directory: Directory,
    log_key: HybridPrivateKey,
    *,
    witnesses: Sequence[tuple[AgencyId, HybridPrivateKey]] = (),
    now: datetime,
) -> DirectoryLogProof:
    """Hub: append ``directory`` (just put in force) to the directory log, sign a checkpoint
    with the hub's ``log_key`` and write ``directory-log.json``; then each of
    ``witnesses`` (a development keys directory's agencies) cosigns it."""
    leaves_path = keys_dir / DIRECTORY_LOG_LEAVES_FILE
    try:
        leaves = LEAVES.validate_json(read_file(leaves_path)) if leaves_path.exists() else []
    except ValidationError as e:
        raise ConfigError(f"{DIRECTORY_LOG_LEAVES_FILE} is not a list of leaves") from e
    directory_log = DirectoryLog(leaves)
    try:
        directory_log.append(DirectoryLeaf.of(directory))
    except AuditError as e:
        raise ConfigError(str(e)) from e
    note = sign_note(directory_log.checkpoint_body(), DIRECTORY_LOG_ORIGIN, log_key)
    _write(leaves_path, LEAVES.dump_json(directory_log.leaves).decode())
    previous = directory_log.tree.size - 1
    proof = directory_log.proof(note).model_copy(
        update={
            "previous_size": previous,
            "consistency_proof": tuple(
                base64.b64encode(n).decode("ascii")
                for n in directory_log.consistency_proof(previous)
            ),
        }
    )
    _write(keys_dir / DIRECTORY_LOG_FILE, proof.model_dump_json(indent=2) + "\n")
    log.info("directory_logged", serial=directory.serial, size=directory_log.tree.size)
    for agency, witness_key in witnesses:
        proof = cosign_directory_log(keys_dir, agency, witness_key, directory, now=now)
    return proof


def cosign_directory_log(
    keys_dir: Path,
    agency: AgencyId,
    witness_key: HybridPrivateKey,
    trusted: Directory,
    *,
    now: datetime,
) -> DirectoryLogProof:
    """Agency: cosign the directory-log checkpoint in ``directory-log.json`` if it extends
    what this agency cosigned before and ends in ``trusted`` (the directory it holds).
    Raises :class:`AuditError` (ForkDetected on a rewritten log) and cosigns nothing."""
    proof = parse_directory_log_proof(read_file(keys_dir / DIRECTORY_LOG_FILE))
    state_path = witness_state_path(keys_dir, agency)
    last = (
        WitnessState.model_validate_json(read_file(state_path)).last_checkpoint
        if state_path.exists()
        else None
    )
    name = witness_name(agency)
    witness = DirectoryWitness(name, witness_key, hub_log_public_key(trusted), last_checkpoint=last)
    consistency: list[bytes] = []
    if last is not None:
        last_size = parse_checkpoint_body(note_body(last)).size
        if last_size != proof.previous_size:
            leaves = LEAVES.validate_json(read_file(keys_dir / DIRECTORY_LOG_LEAVES_FILE))
            consistency = DirectoryLog(leaves).consistency_proof(last_size)
        else:
            consistency = list(proof.consistency_nodes())
    line = witness.observe(proof.checkpoint, consistency, proof, trusted, now=now)
    cosigned = proof.model_copy(
        update={"checkpoint": add_signature_lines(proof.checkpoint, [line])}
    )
    _write(keys_dir / DIRECTORY_LOG_FILE, cosigned.model_dump_json(indent=2) + "\n")
    _write(state_path, witness.witness.to_json())
    log.info("directory_log_cosigned", agency=agency, serial=proof.leaf.serial)
    return cosigned


def unlogged_reason(keys_dir: Path, agency: AgencyId, raw: bytes) -> str | None:
    """Why the signed directory ``raw`` is not in the cosigned directory log, or None.

    Required once this agency has cosigned a directory log here (its witness state
    exists): from then on a directory without a proof of inclusion in a checkpoint
    carrying the witness quorum is refused, so deleting ``directory-log.json`` does not
    turn the check off. The root signatures are checked after this, by
    :class:`~sigbus.protocol.directory.TrustedDirectory`."""
    if not witness_state_path(keys_dir, agency).exists():
        return None
    try:
        directory = parse_signed_directory(raw).directory
        proof = parse_directory_log_proof(read_file(keys_dir / DIRECTORY_LOG_FILE))
        trust = trust_from_directory(directory, root_public=b"", witness_name=witness_name)
        check_directory_logged(directory, proof, trust)
    except (AuditError, ConfigError, ProtocolError) as e:
        return str(e)
    return None
