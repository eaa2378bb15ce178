"""REST routes under /api (FastAPI)."""
