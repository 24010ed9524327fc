"""Socialtjänsten: leads the SIG. Opens cases, records samtycke (consent) from
the young person and each vårdnadshavare (guardian with custody), invites the
parties, draws up the individuell åtgärdsplan and calls individual meetings.

These are the *lead agency's* commands: they are attached to whichever profile
says ``lead = true`` (``profiles/social.toml`` as shipped)."""
