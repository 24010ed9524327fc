"""`python -m sigbus`."""

from sigbus.cli import entrypoint

entrypoint()
