"""Checks evaluated on a host's facts."""
