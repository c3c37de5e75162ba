"""The collector's HTTP API (`/api/v1/`), built by `create_app(settings, store)`: authentication
(bearer tokens → a user with a role, or an agent) and authorisation per route (`auth`), the report
ingest pipeline (`ingest`), JSON errors with stable codes (`errors`), the wire models (`schemas`),
the body-size limit and one audit entry per request (`middleware`), the Prometheus metrics
(`metrics`) and one router per OpenAPI tag (`routers`).
"""

from collector.api.app import create_app

__all__ = ["create_app"]
