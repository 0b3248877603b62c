"""The HTTP service (FastAPI): routes over the same core calls as the Python API and the CLI."""
