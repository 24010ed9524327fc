"""The disclosure extract in the console: the person's pseudonyms, the rows, the PDF.

The personnummer the officer enters is turned into the hub's subject id
(``broker.pseudonym.subject_id_for``) at once and then into each entry's
per-case ref; it is never kept, written or logged. What is kept, for ten
minutes and in memory only, is the built extract under a random token bound
to the officer, so the PDF and the JSON can be downloaded without sending the
personnummer again.
"""

from __future__ import annotations

import base64
import secrets
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from fpdf import FPDF

from sigbus.audit.checkpoint import parse_checkpoint_body, parse_signed_note
from sigbus.audit.entry import LogEntry
from sigbus.audit.extract import Extract
from sigbus.broker.pseudonym import subject_id_for, subject_ref_for
from sigbus.console.i18n import t
from sigbus.console.shaping import readable_basis, readable_outcome, readable_reason
from sigbus.policy.rules import Rules
from sigbus.protocol.personnummer import normalise_personnummer

#: How long a built extract is kept for its downloads.
KEEP = timedelta(minutes=10)


class HasSubject(Protocol):
    """A hub case record (``broker.state.CaseRecord``): whose case it is."""

    @property
    def subject_id(self) -> str: ...


def about_person(
    personnummer: str,
    pseudonym_key: bytes,
    cases: Mapping[str, HasSubject] | None = None,
) -> Callable[[LogEntry], bool]:
    """Whether an entry is about the person: its ``subject_ref`` is the person's ref in the
    entry's scope (case, or message outside a case). Raises ``PersonnummerError``.

    ``cases``: the hub's case records. A deny the hub decides before the policy (a
    message in a closed case, a refused consent record) names no subject, only its
    case; in one of the person's cases it is a deny about them all the same."""
    subject_id = subject_id_for(normalise_personnummer(personnummer), pseudonym_key)
    theirs = {ref for ref, record in (cases or {}).items() if record.subject_id == subject_id}
    refs: dict[str, str] = {}

    def is_about(entry: LogEntry) -> bool:
        if entry.subject_ref is None:
            return entry.case_ref is not None and entry.case_ref in theirs
        scope = entry.case_ref or entry.message_id
        if scope not in refs:
            refs[scope] = subject_ref_for(subject_id, scope, pseudonym_key)
        return entry.subject_ref == refs[scope]

    return is_about


@dataclass(frozen=True)
class ExtractRow:
    index: int
    when: str
    case_ref: str
    category: str
    sender: str
    recipient: str
    basis: str
    outcome: str
    reasons: str
    consenters: str
    leaf_hash: str
    proof: tuple[str, ...]


def extract_rows(extract: Extract, rules: Rules, lang: str) -> list[ExtractRow]:
    out = []
    for line in extract.lines:
        e = line.entry
        out.append(
            ExtractRow(
                index=e.index,
                when=e.decided_at.strftime("%Y-%m-%d %H:%M"),
                case_ref=e.case_ref or "-",
                category=e.message_type.value if e.message_type else "-",
                sender=e.sender or "-",
                recipient=e.recipient or "-",
                basis=readable_basis(e.legal_basis, rules, lang),
                outcome=readable_outcome(e.outcome.value, lang),
                reasons="; ".join(readable_reason(r, lang) for r in e.reasons),
                consenters=", ".join(t(c, lang) for c in line.consenters) or "-",
                leaf_hash=line.leaf_hash.hex(),
                proof=tuple(base64.b64encode(p).decode() for p in line.proof),
            )
        )
    return out


def checkpoint_summary(extract: Extract) -> tuple[int, str]:
    """The checkpoint's size and base64 root, as shown beside the lines."""
    body = parse_checkpoint_body(parse_signed_note(extract.checkpoint).body)
    return body.size, base64.b64encode(body.root).decode()


def _latin1(text: str) -> str:
    # The PDF's core font (Helvetica) is Latin-1: å, ä, ö and § are in it, dashes are not.
    text = text.replace("—", "-").replace("–", "-").replace("→", "->")
    return text.encode("latin-1", "replace").decode("latin-1")


def extract_pdf(extract: Extract, rules: Rules, lang: str, produced_at: datetime) -> bytes:
    """The extract as a PDF: one block per line ("#<log index>"), with its proof, and the
    checkpoint it was verified against. Uncompressed, so its text can be searched."""
    rows = extract_rows(extract, rules, lang)
    size, root = checkpoint_summary(extract)
    pdf = FPDF(format="A4")
    pdf.set_compression(False)
    pdf.set_title(_latin1(t("extract", lang)))
    pdf.set_keywords(f"sigbus-extract lines={len(rows)} checkpoint-size={size}")
    pdf.set_creator("sigbus console")
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 15)
    pdf.multi_cell(0, 8, _latin1(t("extract", lang)), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "", 10)
    for text in (
        t("extract_intro", lang),
        f"{t('generated_at', lang)}: {produced_at.strftime('%Y-%m-%d %H:%M %Z')}",
        f"{t('verified_against', lang)}: {extract.origin}, {size}, {root}",
        f"{len(rows)} {t('lines', lang)}",
    ):
        pdf.multi_cell(0, 5, _latin1(text), new_x="LMARGIN", new_y="NEXT")
    for r in rows:
        pdf.ln(3)
        pdf.set_font("Helvetica", "B", 10)
        head = f"#{r.index}  {r.when}  {r.outcome}  {r.category}"
        pdf.multi_cell(0, 5, _latin1(head), new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", "", 9)
        for label, value in (
            ("case", r.case_ref),
            ("sender", r.sender),
            ("recipient", r.recipient),
            ("basis", r.basis),
            ("consent_by", r.consenters),
            ("reason", r.reasons or "-"),
        ):
            pdf.multi_cell(
                0, 4.5, _latin1(f"{t(label, lang)}: {value}"), new_x="LMARGIN", new_y="NEXT"
            )
        pdf.set_font("Courier", "", 7)
        pdf.multi_cell(
            0, 3.5, f"{t('leaf_hash', 'en')}: {r.leaf_hash}", new_x="LMARGIN", new_y="NEXT"
        )
        proof = " ".join(r.proof) or "-"
        pdf.multi_cell(
            0,
            3.5,
            _latin1(f"{t('proof', lang)} ({len(r.proof)}): {proof}"),
            new_x="LMARGIN",
            new_y="NEXT",
        )
    pdf.ln(4)
    pdf.set_font("Courier", "", 7)
    pdf.multi_cell(0, 3.5, _latin1(extract.checkpoint), new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())


@dataclass(frozen=True)
class Kept:
    user: str
    extract: Extract
    produced_at: datetime
    case_refs: tuple[str, ...]


class ExtractCache:
    """Built extracts by random token, for their owner only, for :data:`KEEP`; in memory."""

    def __init__(self) -> None:
        self._kept: dict[str, Kept] = {}
        self._lock = threading.Lock()

    def put(self, kept: Kept) -> str:
        token = secrets.token_urlsafe(24)
        with self._lock:
            self._drop_old(kept.produced_at)
            self._kept[token] = kept
        return token

    def get(self, token: str, user: str, now: datetime) -> Kept | None:
        with self._lock:
            self._drop_old(now)
            kept = self._kept.get(token)
        if kept is None or not secrets.compare_digest(kept.user, user):
            return None
        return kept

    def _drop_old(self, now: datetime) -> None:
        for token in [k for k, v in self._kept.items() if now - v.produced_at > KEEP]:
            del self._kept[token]
