"""The taps the service mounts (one line per tap module)."""

from __future__ import annotations

from fastapi import APIRouter

routers: list[APIRouter] = []
