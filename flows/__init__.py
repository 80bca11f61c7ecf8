"""Prefect flows: wiring, parameters, branching. No maths here.

Wherever the project starts Prefect (its temporary server included), it sends nothing anywhere: the server's
analytics are off unless the user has set them on explicitly."""

import os

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
