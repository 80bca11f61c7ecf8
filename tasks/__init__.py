"""Prefect tasks: thin wrappers (caching, retries, logging, artifacts) around one library call each.

Importing them turns Prefect's server analytics off unless the user has set them on (see flows/__init__.py)."""

import os

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
