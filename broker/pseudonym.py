"""The hub's pseudonymous subject id: a keyed hash of the personnummer.

HMAC-SHA-256 (RFC 2104) under a hub-only key: stable, so the log can be
searched per person (GDPR art. 15 extracts), yet useless without the key,
unlike a plain hash, which anyone could reverse by enumerating the small
personnummer space.
"""

from __future__ import annotations

import hashlib
import hmac

from sigbus.protocol.ids import SubjectId


def subject_id_for(personnummer: str, pseudonym_key: bytes) -> SubjectId:
    digest = hmac.new(pseudonym_key, personnummer.encode(), hashlib.sha256).hexdigest()
    # Hex digests can hold digit runs; letters-only encoding keeps ids free of them.
    return SubjectId("subj-" + digest[:32].translate(_HEX_TO_LETTERS))


_HEX_TO_LETTERS = str.maketrans("0123456789abcdef", "ghijklmnopabcdef")
