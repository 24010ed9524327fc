"""The wire format every party shares. Pure: no I/O, no clock reads."""
