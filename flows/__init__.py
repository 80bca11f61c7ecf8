"""Prefect flows: wiring, parameters, branching. No maths here.

Wherever the project starts Prefect (its temporary server included), it sends nothing anywhere: the server's
analytics are off unless the user has set them on explicitly. The temporary server gets 90 s to start, not
Prefect's 20: on two busy cores (a training beside it) it took longer and the run died before it began."""

import os

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
