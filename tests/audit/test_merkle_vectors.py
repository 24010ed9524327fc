"""Every transparency-dev RFC 9162 vector: wantErr cases rejected, the others accepted."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from sigbus.audit.errors import ProofError
from sigbus.audit.merkle import verify_consistency, verify_inclusion

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "rfc9162"
FILES = sorted(VECTORS.rglob("*.json"))


def _b64(value: str) -> bytes:
    return base64.b64decode(value)


def _run(vector: dict[str, Any]) -> None:
    proof = [_b64(node) for node in vector["proof"] or []]
    if "leafIdx" in vector:
        verify_inclusion(
            _b64(vector["leafHash"]),
            vector["leafIdx"],
            vector["treeSize"],
            proof,
            _b64(vector["root"]),
        )
    else:
        verify_consistency(
            vector["size1"], vector["size2"], proof, _b64(vector["root1"]), _b64(vector["root2"])
        )


def test_vectors_are_present() -> None:
    assert len(FILES) >= 190
    assert {p.relative_to(VECTORS).parts[0] for p in FILES} == {"inclusion", "consistency"}


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(VECTORS)) for p in FILES])
def test_vector(path: Path) -> None:
    vector = json.loads(path.read_text())
    if vector["wantErr"]:
        with pytest.raises(ProofError):
            _run(vector)
    else:
        _run(vector)
