"""Polisen (the police). Everything the hub and the command line need to know
about the police is data in ``profiles/police.toml``: LUL 6 § notifications and
reports of concern, plan commitments, status reports. Police-specific code (an
integration with the police's case system, say) would live here."""
