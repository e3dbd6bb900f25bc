"""Who may do what on the bus: one NATS identity per service role, its permissions derived
from one table (`permissions.IDENTITIES`), its credentials generated under the data
directory, the nats-server config rendered from both (see docs/security.md)."""
