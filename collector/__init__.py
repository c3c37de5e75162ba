"""The `medsec` collector: enrolment, signed ingestion, storage, the audit log, zone scans and the API."""
