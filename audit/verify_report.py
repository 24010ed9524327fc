"""What a verification proved, in plain words (English and Swedish) and as JSON.

Two verdicts only ever come out of a verification that did not fail:

- ``verified``: checked against trust anchors the officer holds (the pinned
  root key, the signed directory; :mod:`audit.trust`), with a witness quorum.
- ``self-consistent-only``: checked against the keys written inside the file
  itself. Anyone can write such a file, so this proves nothing about who wrote
  the log or whether it was altered; it is never reported as OK.

A failed verification is an :class:`~audit.errors.ExportError` (verdict
``failed`` in the command's JSON). Every line of :meth:`VerifyReport.lines` is
explained in ``docs/compliance.md``.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from sigbus.audit.checkpoint import add_signature_lines
from sigbus.audit.quarantine import Fault

Verdict = Literal["verified", "self-consistent-only"]

VERIFIED: Verdict = "verified"
SELF_CONSISTENT_ONLY: Verdict = "self-consistent-only"


@dataclass(frozen=True)
class CosignatureCheck:
    """A cosignature that counts: its witness, the directory key it verified under."""

    witness: str
    timestamp: int
    line: str
    agency: str | None = None  # None: self-consistency only (the key the file declares)
    key_id: str | None = None


@dataclass(frozen=True)
class RejectedCosignature:
    """A cosignature in the file that does not count towards the quorum, and why."""

    position: int
    witness: str
    reason: str


@dataclass(frozen=True)
class TrustFacts:
    """Against which trust anchors a ``verified`` report was proven."""

    root_key_id: str
    directory_serial: int
    log_key_id: str
    quorum: int
    witnesses: int  # trusted witnesses in the directory (the n of "k of n")
    missing: tuple[str, ...] = ()  # trusted witnesses with no counted cosignature
    rejected: tuple[RejectedCosignature, ...] = ()


@dataclass(frozen=True)
class VerifyReport:
    verdict: Verdict
    origin: str
    entries: int
    root: bytes
    checkpoint_note: str
    cosignatures: tuple[CosignatureCheck, ...] = ()
    trust: TrustFacts | None = None
    earlier_checkpoints: tuple[int, ...] = field(default=())  # sizes proven consistent
    #: (index, fault) of each record that is not a sound entry, each named by a
    #: later quarantine entry of the log (:mod:`audit.quarantine`).
    quarantined: tuple[tuple[int, Fault], ...] = ()

    @property
    def root_b64(self) -> str:
        return base64.b64encode(self.root).decode("ascii")

    def cosigned_checkpoint(self) -> str:
        """The checkpoint with the counted cosignatures: a C2SP note to keep for next time."""
        return add_signature_lines(self.checkpoint_note, [c.line for c in self.cosignatures])

    def lines(self) -> list[str]:
        """The human report: a verdict line, then one English and one Swedish line per fact."""
        size, root = self.entries, self.root_b64
        out = [_headline(self.verdict)]
        if self.trust is None:
            out += [
                "  en: the file agrees only with the keys written inside it; anyone can write "
                "such a file, so nothing is proven about who wrote the log or whether it was "
                "altered",
                "  sv: filen stämmer bara med nycklarna som står i den själv; vem som helst kan "
                "skriva en sådan fil, så inget är bevisat om vem som skrev loggen eller om den "
                "har ändrats",
            ]
        out += [
            f"  entries: {size} entries intact and in order; tree size {size}, root hash {root}",
            f"  poster: {size} poster oförändrade och i ordning; trädstorlek {size}, "
            f"rothash {root}",
        ]
        out += self._trust_lines() if self.trust is not None else _self_lines()
        out += self._earlier_lines()
        if self.quarantined:
            named = ", ".join(f"entry {index} ({fault.value})" for index, fault in self.quarantined)
            out += [
                f"  quarantined: records each named by a later log entry: {named}",
                f"  karantän: poster som var och en pekas ut av en senare loggpost: {named}",
            ]
        return out

    def _trust_lines(self) -> list[str]:
        assert self.trust is not None
        t = self.trust
        counted = ", ".join(
            f"{c.agency} ({c.key_id}, {_time(c.timestamp)})" for c in self.cosignatures
        )
        out = [
            f"  log key: checkpoint of origin {self.origin!r} signed by the hub's log key "
            f"{t.log_key_id}, from directory serial {t.directory_serial} signed by the pinned "
            f"root key {t.root_key_id}",
            f"  loggnyckel: kontrollpunkten (ursprung {self.origin!r}) är signerad med navets "
            f"loggnyckel {t.log_key_id}, ur katalogen med serienummer {t.directory_serial}, "
            f"signerad av den fastlåsta rotnyckeln {t.root_key_id}",
            f"  witnesses: quorum {len(self.cosignatures)} of {t.witnesses} distinct trusted "
            f"witnesses cosigned this checkpoint (at least {t.quorum} required): {counted}",
            f"  vittnen: {len(self.cosignatures)} av {t.witnesses} betrodda vittnen har "
            f"kontrasignerat kontrollpunkten (minst {t.quorum} krävs): {counted}",
        ]
        if t.missing:
            missing = ", ".join(t.missing)
            out += [
                f"  not cosigned: {missing}",
                f"  har inte kontrasignerat: {missing}",
            ]
        for r in t.rejected:
            out += [
                f"  not counted: cosignature {r.position} by {r.witness!r}: {r.reason}",
                f"  räknas inte: kontrasignatur {r.position} av {r.witness!r}: {r.reason}",
            ]
        return out

    def _earlier_lines(self) -> list[str]:
        if not self.earlier_checkpoints:
            return [
                "  earlier: no earlier checkpoint given, so a rollback since your last "
                "verification is not excluded",
                "  tidigare: ingen tidigare kontrollpunkt angiven, så en återställning sedan "
                "din förra verifiering är inte utesluten",
            ]
        sizes = ", ".join(str(size) for size in self.earlier_checkpoints)
        return [
            f"  earlier: consistent with your earlier checkpoints at tree sizes {sizes} "
            "(nothing they cover was changed or removed)",
            f"  tidigare: förenlig med dina tidigare kontrollpunkter vid trädstorlek {sizes} "
            "(inget de täcker har ändrats eller tagits bort)",
        ]

    def one_line(self) -> str:
        """The verdict and its key facts on one line (English), e.g. for the demo."""
        if self.trust is None:
            return f"NOT VERIFIED (self-consistency only): {self.entries} entries"
        witnesses = ", ".join(c.agency or c.witness for c in self.cosignatures)
        return (
            f"VERIFIED against root key {self.trust.root_key_id} (directory serial "
            f"{self.trust.directory_serial}): {self.entries} entries, root {self.root_b64}, "
            f"log key {self.trust.log_key_id}, witness quorum {len(self.cosignatures)} of "
            f"{self.trust.witnesses} ({witnesses})"
        )

    def summary(self) -> str:
        return "\n".join(self.lines())

    def to_json(self) -> dict[str, Any]:
        """The same facts as JSON values (``sigbus audit verify --json``)."""
        t = self.trust
        return {
            "verdict": self.verdict,
            "ok": self.verdict == VERIFIED,
            "origin": self.origin,
            "entries": self.entries,
            "tree_size": self.entries,
            "root": self.root_b64,
            "root_key_id": t.root_key_id if t else None,
            "directory_serial": t.directory_serial if t else None,
            "log_key_id": t.log_key_id if t else None,
            "quorum": {"required": t.quorum, "met": len(self.cosignatures), "of": t.witnesses}
            if t
            else None,
            "cosignatures": [
                {
                    "witness": c.witness,
                    "agency": c.agency,
                    "key_id": c.key_id,
                    "timestamp": c.timestamp,
                }
                for c in self.cosignatures
            ],
            "not_cosigned": list(t.missing) if t else [],
            "not_counted": [
                {"position": r.position, "witness": r.witness, "reason": r.reason}
                for r in (t.rejected if t else ())
            ],
            "earlier_checkpoints": list(self.earlier_checkpoints),
            "quarantined": [
                {"index": index, "fault": fault.value} for index, fault in self.quarantined
            ],
        }


def _headline(verdict: Verdict) -> str:
    if verdict == VERIFIED:
        return (
            "VERIFIED / VERIFIERAD: proven against the pinned root key and the witness quorum "
            "below / bevisad mot den fastlåsta rotnyckeln och vittneskvorumet nedan"
        )
    return (
        "NOT VERIFIED / INTE VERIFIERAD: self-consistency check only, authenticity not proven "
        "/ endast intern konsistens, äktheten är inte bevisad"
    )


def _self_lines() -> list[str]:
    return [
        "  keys: the log key and witness keys were read from the file itself",
        "  nycklar: loggnyckeln och vittnesnycklarna lästes ur filen själv",
        "  to verify: pass --directory DIR_FILE --root ROOT_PUB",
        "  för att verifiera: ange --directory KATALOGFIL --root ROTNYCKEL",
    ]


def _time(unix: int) -> str:
    return datetime.fromtimestamp(unix, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
