"""The dashboard's pages, one module each, every one exposing `router(ctx) -> APIRouter`: the
overview, a clause, the hosts and a host (`overview`, `clause`, `hosts`), the network and scans
(`network`), snapshots and report downloads (`snapshots`)."""
