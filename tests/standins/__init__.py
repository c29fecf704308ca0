"""Local stand-ins for external services: real HTTP servers speaking the real wire formats."""
