"""The hub's pseudonyms for a person: one kept inside the hub, one per case for the log.

``subject_id_for``: HMAC-SHA-256 (RFC 2104) of the personnummer under a
hub-only key. Stable per person, so the hub's encrypted state can index a
person's cases (GDPR art. 15 extracts), yet useless without the key, unlike a
plain hash, which anyone could reverse by enumerating the small personnummer
space. It never leaves the hub.

``subject_ref_for``: what a log entry carries. A keyed hash of the subject id
and the case (for a message outside any case, such as a referral, the message
id), so two cases of one person have unrelated refs: a log entry, which leaves
the hub in exports, cannot link one person's cases; only the hub, holding the
key and the person -> cases index in its state, can list a person's refs.
"""

from __future__ import annotations

import hashlib
import hmac

from sigbus.protocol.ids import SubjectId, SubjectRef

#: Domain separation: a subject ref can never equal the HMAC of some other input.
_SUBJECT_REF_DOMAIN = b"sigbus/v1/subject-ref\n"


def subject_id_for(personnummer: str, pseudonym_key: bytes) -> SubjectId:
    digest = hmac.new(pseudonym_key, personnummer.encode(), hashlib.sha256).hexdigest()
    return SubjectId("subj-" + _letters(digest))


def subject_ref_for(subject_id: str, scope: str, pseudonym_key: bytes) -> SubjectRef:
    """The per-case pseudonym; ``scope`` is the case ref, or the message id outside a case.

    Neither a subject id nor a scope holds a newline (both are opaque ids), so
    joining them with one is an unambiguous encoding of the pair.
    """
    message = _SUBJECT_REF_DOMAIN + f"{subject_id}\n{scope}".encode()
    digest = hmac.new(pseudonym_key, message, hashlib.sha256).hexdigest()
    return SubjectRef("sref-" + _letters(digest))


def _letters(hex_digest: str) -> str:
    # Hex digests can hold digit runs; letters-only encoding keeps ids free of them.
    return hex_digest[:32].translate(_HEX_TO_LETTERS)


_HEX_TO_LETTERS = str.maketrans("0123456789abcdef", "ghijklmnopabcdef")
