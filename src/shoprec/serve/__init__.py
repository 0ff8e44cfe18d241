"""The recommendation service: FastAPI app factory, storage, API keys, web page.

    from shoprec.serve import ServeSettings, create_app
    app = create_app(ServeSettings(database_url="sqlite:///shop.db", model_path="models/item-knn.npz"))

Needs the 'serve' extra (`pip install 'shoprec[serve]'`). Imports are lazy so that
`import shoprec.serve` alone costs nothing.
"""

from __future__ import annotations

__all__ = ["ServeSettings", "create_app"]


def __getattr__(name: str):
    if name == "create_app":
        from shoprec.errors import require_extra

        require_extra("fastapi", "serve")
        require_extra("sqlalchemy", "serve")
        from shoprec.serve.app import create_app

        return create_app
    if name == "ServeSettings":
        from shoprec.serve.settings import ServeSettings

        return ServeSettings
    raise AttributeError(f"module 'shoprec.serve' has no attribute {name!r}")
