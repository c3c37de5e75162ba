"""The `medsec` collector: enrolment, signed ingestion, storage, the audit log, scans, the API."""
