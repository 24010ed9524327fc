"""Personnummer: validation where it enters, and screening of free text.

A personnummer (Swedish personal identity number, Skatteverket SKV 704) is the
one direct identifier sigbus carries. It may appear only inside encrypted
bodies, so it is validated when a body is built or opened and nowhere else.
Only the unambiguous 12-digit form is accepted: the 10-digit form needs the
current date to infer its century, and this module never reads a clock.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated

from personnummer import personnummer as _pnr
from pydantic import AfterValidator

#: 12-digit form, separator optional: YYYYMMDD-NNNC or YYYYMMDDNNNC.
_LONG_FORM = re.compile(r"^(19|20)\d{6}-?\d{4}$")

#: Anything that looks like a personnummer or samordningsnummer inside text,
#: 10 or 12 digits with an optional '-' or '+' separator. Used to reject free
#: text that could carry one into a field that is not meant to.
PERSONNUMMER_PATTERN = re.compile(r"(?<!\d)(\d{2})?\d{6}[-+]?\d{4}(?!\d)")

_EARLIEST_BIRTH_YEAR = 1900


class PersonnummerError(ValueError):
    """A personnummer failed validation. The message never echoes the value."""


def normalise_personnummer(value: str) -> str:
    """Validate a 12-digit personnummer and return it as ``YYYYMMDD-NNNC``.

    Raises :class:`PersonnummerError` for a wrong form, check digit or date.
    """
    if not _LONG_FORM.match(value):
        raise PersonnummerError("personnummer must have 12 digits: YYYYMMDD-NNNC")
    digits = value.replace("-", "")
    try:
        valid = _pnr.valid(digits)
    except (_pnr.PersonnummerException, ValueError) as e:
        raise PersonnummerError("personnummer could not be parsed") from e
    if not valid:
        raise PersonnummerError("personnummer check digit or date is invalid")
    if int(digits[:4]) < _EARLIEST_BIRTH_YEAR:
        raise PersonnummerError("personnummer birth year is not plausible")
    return f"{digits[:8]}-{digits[8:]}"


def birth_date(personnummer: str) -> date:
    """Date of birth of a normalised personnummer (samordningsnummer: day - 60)."""
    digits = personnummer.replace("-", "")
    day = int(digits[6:8])
    if day > 60:  # samordningsnummer, SFS 1991:481 18 a §
        day -= 60
    return date(int(digits[:4]), int(digits[4:6]), day)


def contains_personnummer_pattern(text: str) -> bool:
    return PERSONNUMMER_PATTERN.search(text) is not None


def _reject_personnummer_pattern(text: str) -> str:
    if contains_personnummer_pattern(text):
        raise ValueError("free text must not contain a personnummer pattern")
    return text


#: A validated personnummer in normalised long form.
Personnummer = Annotated[str, AfterValidator(normalise_personnummer)]

#: Bounded free text, screened for personnummer patterns.
ScreenedText = Annotated[str, AfterValidator(_reject_personnummer_pattern)]
