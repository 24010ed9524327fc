"""Fictitious personnummer for the demo, the soak and tests, and the one referral they send.

Serial numbers 980-999 are used so that the numbers are recognisably made up;
the check digit is computed (Luhn, as Skatteverket SKV 704 prescribes) so they
pass validation like real ones.
"""

from __future__ import annotations

from datetime import date

from sigbus.protocol.codes import ReferralKind, ReferralReason
from sigbus.protocol.messages import Referral


def luhn_check_digit(nine_digits: str) -> int:
    total = 0
    for i, ch in enumerate(nine_digits):
        product = int(ch) * (2 if i % 2 == 0 else 1)
        total += product - 9 if product > 9 else product
    return (10 - total % 10) % 10


def fictitious_personnummer(birth: date, serial: int = 980) -> str:
    if not 980 <= serial <= 999:
        raise ValueError("fictitious serials are 980-999")
    yymmdd = birth.strftime("%y%m%d")
    check = luhn_check_digit(yymmdd + f"{serial:03d}")
    return f"{birth:%Y%m%d}-{serial:03d}{check}"


def birth_date_for_age(today: date, years: int) -> date:
    """A birth date that makes someone ``years`` old on ``today`` (safe on 29 February)."""
    try:
        born = today.replace(year=today.year - years)
    except ValueError:
        born = today.replace(year=today.year - years, day=28)
    return date.fromordinal(born.toordinal() - 40)  # well inside the year of age


def lul6_referral(personnummer: str, observed_on: date) -> Referral:
    """The police's LUL 6 § notification to social services (a weapon, from the youth
    unit): the statutory referral the soak, the cluster and the crash tests send."""
    return Referral(
        kind=ReferralKind.LUL_6_NOTIFICATION,
        personnummer=personnummer,
        reasons=(ReferralReason.WEAPON,),
        observed_on=observed_on,
        contact_function="police_youth_unit",
    )
