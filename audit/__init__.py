"""Tamper-evident disclosure log: RFC 9162 Merkle tree, C2SP checkpoints, offline verification."""
