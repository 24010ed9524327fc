"""Former home of the export format and its verifier, kept so existing imports keep working.

The format is :mod:`audit.export_format`, the reference verifier
:mod:`audit.verify`, and the parallel file verifier (which opens files and
starts processes, so it lives outside this pure package)
:mod:`sigbus.parallel_verify`. ``sigbus.demo`` still imports
``verify_export`` from here; new code should import from those modules.
"""

from __future__ import annotations

from sigbus.audit.export_format import (
    EXPORT_FORMAT,
    CosignatureRecord,
    ExportHeader,
    ExportTrailer,
    read_entry_lines,
    write_export,
)
from sigbus.audit.verify import CosignatureCheck, KeySource, VerifyReport, verify_export

__all__ = [
    "EXPORT_FORMAT",
    "CosignatureCheck",
    "CosignatureRecord",
    "ExportHeader",
    "ExportTrailer",
    "KeySource",
    "VerifyReport",
    "read_entry_lines",
    "verify_export",
    "write_export",
]
