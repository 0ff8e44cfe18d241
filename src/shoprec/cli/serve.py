"""`shoprec serve`: run the recommendation service (and its web page) with uvicorn.

    shoprec serve --demo                      # bundled shop, trained model, http://127.0.0.1:8000/
    shoprec serve --db postgresql+psycopg://shop@db/shop --model models/item-knn.npz --port 8080
"""

from __future__ import annotations

import argparse
import os
import secrets
from pathlib import Path

from shoprec.cli.common import say

__all__ = ["add_parser"]


def add_parser(subparsers) -> None:
    """Add the `serve` sub-command to an argparse subparsers object."""
    p = subparsers.add_parser(
        "serve", help="run the recommendation service and web page",
        description="Run the HTTP service. Settings also come from SHOPREC_* environment variables "
                    "(see docs/service.md); the options here override them.",
    )
    p.add_argument("--db", dest="database_url", default=None,
                   help="database URL: sqlite:///path.db (default under ~/.local/share/shoprec) "
                        "or postgresql+psycopg://user@host:port/db")
    p.add_argument("--host", default=None, help="interface to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port (default 8000)")
    p.add_argument("--model", dest="model_path", default=None, help="model file (.npz) to serve")
    p.add_argument("--model-dir", default=None, help="directory reloads may load models from")
    p.add_argument("--demo", action="store_true",
                   help="import the bundled shop into an empty database, train a model if none is "
                        "saved, and give the page a demo key")
    p.add_argument("--demo-model", default=None,
                   help="model trained for --demo or when no model is given (default: chosen from the data: "
                        "the Transformer when the shop has enough sequences, else item-knn)")
    p.add_argument("--budget", type=float, default=90.0,
                   help="seconds of training for a model trained at start (default 90)")
    p.add_argument("--workers", type=int, default=1,
                   help="worker processes (each loads the model; use PostgreSQL for more than one, and run "
                        "`shoprec retrain` from cron: the workers' own schedules are turned off, and each "
                        "worker loads the model a retrain swapped in within 30 s)")
    p.add_argument("--access-log", action="store_true", help="log every request (paths only)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=run)


def _log(args: argparse.Namespace, message: str) -> None:
    say(args, f"shoprec serve: {message}")


def run(args: argparse.Namespace) -> int:
    """Build the app from settings and arguments, then run uvicorn until interrupted."""
    # Everything the service writes (database, WAL, models, sidecars) is the owner's alone.
    os.umask(0o077)
    from shoprec.errors import require_extra

    require_extra("uvicorn", "serve")
    import uvicorn

    from shoprec.privacy.pseudonym import ENV_KEY, ENV_KEY_FILE, Pseudonymizer, generate_key_file
    from shoprec.serve.app import create_app
    from shoprec.serve.settings import ServeSettings, default_data_dir, default_key_file

    if args.workers < 1:
        from shoprec.errors import ConfigError

        raise ConfigError(f"--workers must be at least 1, got {args.workers}.")
    if args.workers > 1 and args.demo:
        from shoprec.errors import ConfigError

        raise ConfigError("--demo runs one worker (its keys live in memory); drop --workers or --demo.")
    overrides = {k: getattr(args, k) for k in ("database_url", "host", "port", "model_path", "model_dir")}
    # Demo mode is checked (loopback only) before anything is imported or trained.
    settings = ServeSettings.from_env(**overrides, demo=True if args.demo else None)
    pseudonymizer = None
    if args.demo:
        if not os.environ.get(ENV_KEY) and not os.environ.get(ENV_KEY_FILE):
            key_file = default_key_file()
            if not key_file.exists():
                generate_key_file(key_file)
                _log(args, f"created a pseudonym key in {key_file} (kept apart from the data)")
            pseudonymizer = Pseudonymizer.from_file(key_file)
        else:
            pseudonymizer = Pseudonymizer.from_env(data_dir=settings.data_dir)
        from shoprec.serve.demo import bootstrap_demo
        from shoprec.serve.storage import Store

        model_dir = Path(settings.model_dir or (settings.data_dir or default_data_dir()) / "models")
        store = Store(settings.database_url, sqlite_synchronous=settings.sqlite_synchronous)
        store.migrate()
        state = bootstrap_demo(store, pseudonymizer, model_dir, model_name=args.demo_model,
                               log=lambda m: _log(args, m), budget_s=args.budget, verbose=not args.quiet)
        store.dispose()
        changes: dict = {"demo": True, "model_dir": str(model_dir)}
        if not settings.model_path:
            changes["model_path"] = str(state.model_path)
        if not settings.admin_key:
            changes["admin_key"] = "admin_" + secrets.token_hex(16)
            _log(args, f"admin key for this run (memory only): {changes['admin_key']}")
        settings = settings.with_(**changes)
    elif not settings.model_path:
        settings = _train_if_needed(args, settings)
    url = f"http://{settings.host}:{settings.port}/"
    if args.workers > 1:
        return _run_workers(args, settings, url)
    app = create_app(settings, pseudonymizer=pseudonymizer)
    print(f"shoprec service on {url}  (dashboard {url}dashboard, API docs {url}docs)", flush=True)
    if args.demo:
        app.state.service.sample_shoppers = state.sample_shoppers
    from shoprec.serve.http_protocol import deadline_protocol

    # ws="none": the service has no websockets, and uvicorn's legacy websockets module warns.
    uvicorn.run(app, host=settings.host, port=settings.port, access_log=args.access_log, ws="none",
                http=deadline_protocol(settings.request_timeout_s), timeout_keep_alive=settings.idle_timeout_s,
                log_level="warning" if args.quiet else "info")
    return 0


def _train_if_needed(args: argparse.Namespace, settings):
    """Without --model: serve the model trained from this database before, or train one now
    (chosen from the data) when the database holds events; else start without a model."""
    from shoprec.serve.settings import default_data_dir
    from shoprec.serve.storage import Store
    from shoprec.serve.training import choose_model, dataset_from_store, train_from_store

    store = Store(settings.database_url, sqlite_synchronous=settings.sqlite_synchronous)
    try:
        store.migrate()
        if store.count_events() == 0:
            _log(args, "no model and no events yet: ingest events, then POST /v1/model/retrain or restart")
            return settings
        model_dir = Path(settings.model_dir or (settings.data_dir or default_data_dir()) / "models")
        choice = choose_model(dataset_from_store(store), args.budget, name=args.demo_model)
        path = model_dir / f"{choice.name}.npz"
        if not path.is_file():
            _log(args, f"training {choice.name} from the database (budget {args.budget:.0f}s) ...")
            train_from_store(store, path, choice, verbose=not args.quiet, log=lambda m: _log(args, m))
        return settings.with_(model_path=str(path), model_dir=str(model_dir))
    finally:
        store.dispose()


def _run_workers(args: argparse.Namespace, settings, url: str) -> int:
    """Several uvicorn worker processes, each building the app from the environment."""
    import uvicorn

    from shoprec.errors import ConfigError

    if settings.is_sqlite:
        _log(args, "several workers over SQLite serialise their writes on the database lock; "
                   "PostgreSQL is the backend for this")
    if not settings.model_path:
        raise ConfigError("--workers needs --model (or a model trained at start) so every worker serves the same file.")
    # One schedule for all: cron runs `shoprec retrain`, and every worker follows its runs.
    env = {"database_url": settings.database_url, "model_path": settings.model_path, "host": settings.host,
           "port": str(settings.port), "retrain_every_s": "0",
           "follow_retrains_s": str(settings.follow_retrains_s or 30.0),
           "request_timeout_s": str(settings.request_timeout_s)}
    if settings.model_dir:
        env["model_dir"] = settings.model_dir
    for key, value in env.items():
        os.environ[f"SHOPREC_{key.upper()}"] = str(value)
    from shoprec.serve.workers import serve_workers

    config = uvicorn.Config("shoprec.serve.app:app_from_env", factory=True, workers=args.workers, host=settings.host,
                            port=settings.port, access_log=args.access_log, ws="none",
                            http="shoprec.serve.http_protocol:DeadlineProtocol",
                            timeout_keep_alive=settings.idle_timeout_s, log_level="warning" if args.quiet else "info")
    print(f"shoprec service on {url} with {args.workers} workers", flush=True)
    # Each worker listens on its own SO_REUSEPORT socket, so the kernel spreads connections evenly.
    serve_workers(config)
    return 0
