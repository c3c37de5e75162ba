"""The `medsec-agent` CLI: config, gathering, evaluation, rendering, signing, push and spool."""

__version__ = "0.1.0"
