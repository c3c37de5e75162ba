"""The collector's HTTP API under its historical import path: `create_app` lives in
`collector.api`, which owns the API's parts."""

from collector.api import create_app

__all__ = ["create_app"]
