"""The API's routes, one router per OpenAPI tag: `agents` (enrolment, report ingest), `read`
(hosts, reports, results, the audit log), `scans`, `admin` (agents, users) and `service`
(health, metrics). Each is built by a `router(...)` function from the collaborators it uses."""
