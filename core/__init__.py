"""The core every service shares: configuration, the one ledger step, the audit, and the rows and
records that cross between them. It imports only ``law`` and ``schemas``; adapters and services
import it, never the other way round (``make lint`` checks the layers)."""
