"""Serving the model over HTTP: the draw-a-digit page, ``POST /predict``, ``GET /healthz``.

    mnist-bench serve results/model.keras --port 8000    # then open http://127.0.0.1:8000/

`app` holds the ASGI app and request validation, `server` loads the model once (on LiteRT
when installed) and runs uvicorn, `load` is the load test (`mnist-bench serve-load`), and
`static/` the page's assets, served from the package (no CDN: the page works offline).
"""

from .app import MAX_BODY_BYTES, MAX_PIXELS, create_app
from .server import load_for_serving, running_server, serve

__all__ = [
    "MAX_BODY_BYTES",
    "MAX_PIXELS",
    "create_app",
    "load_for_serving",
    "running_server",
    "serve",
]
