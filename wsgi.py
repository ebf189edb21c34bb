"""gunicorn entry point: `gunicorn wsgi:app`."""

import gc

from server.app import create_app

app = create_app()
# The app's modules, schemas and prebuilt statements live as long as the process: moved out
# of the collector's reach, so a full collection during a request scans only what requests
# made (full passes of 0.3-0.5 s were the grid map's p99; bench/README.md "maps").
gc.collect()  # what import and create_app left behind goes, not into the frozen set
gc.freeze()
