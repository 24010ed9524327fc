"""`python -m sigbus`."""

from sigbus.cli import app

app()
