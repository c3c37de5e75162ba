"""The `medsec` collector: API, storage, zone scans and reports (being built; see the issues)."""
