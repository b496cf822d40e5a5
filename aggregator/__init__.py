"""The arq worker side: folding notifications into PostgreSQL, and periodic jobs."""
