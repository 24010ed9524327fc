"""The shared edge: NATS connections, streams, the embedded server, NATS
identities and TLS, key files and the signed directory on disk, logging."""
