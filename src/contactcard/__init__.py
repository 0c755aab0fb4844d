"""contactcard: a self-hostable server for the Linq API v3 contact card endpoints."""

__version__ = "0.1.0"
