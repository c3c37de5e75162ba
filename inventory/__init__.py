"""Fact gatherers: they touch a host only through a `Runner`, and return typed facts."""
