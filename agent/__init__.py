"""The `medsec-agent` CLI: config, gathering, evaluation, rendering (and later signing and push)."""

__version__ = "0.1.0"
