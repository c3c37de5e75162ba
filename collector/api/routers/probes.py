"""The `probes` routes (being written)."""

from fastapi import APIRouter

from collector.api.auth import Auth
from collector.api.middleware import Clock
from collector.settings import CollectorSettings
from collector.store import Store


def router(settings: CollectorSettings, store: Store, auth: Auth, clock: Clock) -> APIRouter:
    return APIRouter(tags=["probes"])
