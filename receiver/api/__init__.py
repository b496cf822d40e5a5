"""The JSON API for frontends: one module per resource, one route table (``routes.py``),
one place deciding access (``access.py``), and ``GET /openapi.json`` generated from them."""
