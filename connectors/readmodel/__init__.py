"""SQL that only reads the ledger tables."""
