"""zcp: zero-copy file replication for Linux."""

__version__ = "0.1.0"
