"""Skolan (the school). Everything the hub and the command line need to know
about the school is data in ``profiles/school.toml``: reports of concern, plan
commitments (attendance, study support, mentor), status reports.
School-specific code (an integration with the school's systems) would live here."""
