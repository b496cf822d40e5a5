"""The built-in pages: server-rendered HTML on the same queries and access rules as the
JSON API (``receiver/api/access.py``), with a little JavaScript in static files."""
