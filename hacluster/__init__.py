"""hacluster: high availability for mail clusters (relay, store, FallbackMX tiers)."""

__version__ = "0.1.0"
