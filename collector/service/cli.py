"""`dossier serve`: the HTTP service over the store (and, with --inventory, the collector's loop
in the same process); `dossier serve token add|remove|list` manages its API tokens.

Thin: options become a `ServiceSettings`, `create_app` builds the app, uvicorn serves it.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import click

from verifier.display import inert

from ..cli import _distributed_paths, _key_option, _store_option, _trust_option
from .errors import ServiceError
from .settings import DEFAULT_LISTEN, ServiceSettings
from .tokens import ADMIN, READ, Tokens

__all__ = ["serve_group"]

DEFAULT_TOKENS = "state/service-tokens.json"
EXIT_USAGE = 2
#: Connections (and tasks) served at once; past it uvicorn answers 503 at once. uvicorn sets no
#: deadline on reading a request's headers, so without a bound slow clients holding connections
#: open (slowloris) could use up the process's file descriptors.
MAX_CONCURRENT_CONNECTIONS = 512

_tokens_option = click.option(
    "--tokens", "tokens_path", type=click.Path(dir_okay=False, path_type=Path), default=DEFAULT_TOKENS,
    envvar="DOSSIER_SERVICE_TOKENS", show_envvar=True, show_default=True,
    help="The API tokens file (salted hashes, mode 0600; `dossier serve token add`).")


@click.group("serve", invoke_without_command=True)
@_store_option
@_trust_option
@_tokens_option
@click.option("--listen", default=DEFAULT_LISTEN, show_default=True, metavar="HOST:PORT",
              help="Address to listen on; other than loopback only with a token configured.")
@click.option("--tls-cert", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="PEM certificate (chain): serve HTTPS.")
@click.option("--tls-key", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="PEM private key of --tls-cert.")
@click.option("--inventory", "-i", "inventory_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              envvar="DOSSIER_INVENTORY", show_envvar=True,
              help="Also poll this inventory every --interval (the collector's loop, in this process).")
@click.option("--interval", type=click.FloatRange(min=1), default=300.0, show_default=True,
              help="Seconds between collections with --inventory.")
@_key_option
@click.option("--webhooks", "webhooks_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              envvar="DOSSIER_WEBHOOKS", show_envvar=True,
              help="POST each alert as a signed event to the URLs of this file (docs/webhooks.md); the admin API "
                   "edits it (mode 0600). Without it: $DOSSIER_WEBHOOK_URLS, not editable.")
@click.option("--ear-key", "ear_key", type=click.Path(dir_okay=False, path_type=Path), default=None,
              envvar="DOSSIER_EAR_KEY", show_envvar=True,
              help="The key EARs are signed with (default: ear-signing-key.pem beside the trust store; made on "
                   "first use, mode 0600); its public half is at /.well-known/jwks.json.")
@click.option("--policy", "policy_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Appraise against this policy YAML for EARs and in the collector's loop (default: EARs "
                   "judge identity only).")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              envvar="DOSSIER_DISTRIBUTED_CONFIG", show_envvar=True,
              help="Distributed collection's configuration: serve the shared PostgreSQL index (its store and "
                   "trust store unless --store/--trust-store are given); the workers poll, so not with "
                   "--inventory.")
@click.pass_context
def serve_group(ctx: click.Context, store_path: Path, trust_store_path: Path, tokens_path: Path, listen: str,
                tls_cert: Path | None, tls_key: Path | None, inventory_path: Path | None, interval: float,
                collector_key: Path | None, webhooks_path: Path | None = None, ear_key: Path | None = None,
                policy_path: Path | None = None, config_path: Path | None = None) -> None:
    """Serve the fleet's trust posture over HTTP: a JSON API under /api/v1/ (OpenAPI at /openapi.json).

    With --inventory the same process also polls the fleet every --interval seconds. Without a
    token configured it listens on loopback only, and admin calls are refused.
    """
    ctx.ensure_object(dict)
    ctx.obj["tokens_path"] = tokens_path
    if ctx.invoked_subcommand is not None:
        return
    extra = _ear_and_webhooks(ctx, webhooks_path, ear_key, policy_path)
    if config_path is not None:
        store_path, trust_store_path = _shared_paths(ctx, config_path, store_path, trust_store_path, inventory_path)
    settings = ServiceSettings(store=store_path, trust_store=trust_store_path, tokens_file=tokens_path,
                               listen=listen, tls_cert=tls_cert, tls_key=tls_key, inventory=inventory_path,
                               collect_interval_s=interval, collector_key=collector_key, extra=extra,
                               distributed_config=config_path, check_host=True)
    try:
        from .app import create_app

        app = create_app(settings)
    except ServiceError as exc:
        click.echo(f"error: {inert(exc)}", err=True)
        ctx.exit(EXIT_USAGE)
    import uvicorn

    host, port = settings.host_port
    try:
        listener = listening_socket(host, port)
    except OSError as exc:
        click.echo(f"error: cannot listen on {inert(listen)}: {exc.strerror}", err=True)
        ctx.exit(EXIT_USAGE)
    scheme = "https" if tls_cert is not None else "http"
    click.echo(f"serving {inert(store_path)} at {scheme}://{inert(listen)}/ (API at /api/v1/, OpenAPI at "
               "/openapi.json)", err=True)
    config = uvicorn.Config(app, ssl_certfile=os.fspath(tls_cert) if tls_cert else None,
                            ssl_keyfile=os.fspath(tls_key) if tls_key else None, log_level="warning",
                            server_header=False, proxy_headers=False,
                            limit_concurrency=MAX_CONCURRENT_CONNECTIONS)
    with listener:
        uvicorn.Server(config).run(sockets=[listener])


def _shared_paths(ctx: click.Context, config_path: Path, store_path: Path, trust_store_path: Path,
                  inventory_path: Path | None) -> tuple[Path, Path]:
    """The store and trust store of the distributed configuration, unless given; exits 2 on a bad
    configuration or with --inventory (with distributed collection the workers poll)."""
    from ..errors import StoreError

    if inventory_path is not None:
        click.echo("error: expected either --config (the workers poll) or --inventory (this process polls), "
                   "found both", err=True)
        ctx.exit(EXIT_USAGE)
    try:
        _, store_path, trust_store_path = _distributed_paths(ctx, config_path, store_path, trust_store_path)
    except StoreError as exc:
        click.echo(f"error: {inert(exc)}", err=True)
        ctx.exit(EXIT_USAGE)
    return store_path, trust_store_path


def listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to (host, port) and listening: bound before `serve` says it serves, so
    a client may connect from the moment it reads that line. Made with IPPROTO_TCP named:
    asyncio sets TCP_NODELAY only on sockets whose protocol says TCP, and without it each small
    answer on a kept-alive connection waits ~40 ms for a delayed ACK (Nagle)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
        listener.listen(socket.SOMAXCONN)
    except OSError:
        listener.close()
        raise
    return listener


def _ear_and_webhooks(ctx: click.Context, webhooks_path: Path | None, ear_key: Path | None,
                      policy_path: Path | None) -> dict[str, object]:
    """The settings of collector/service/ear_hooks.py; exits 2 on a bad webhooks file or policy."""
    from ..errors import CollectorError
    from ..insights.policy import load_policy
    from ..webhooks import load_webhook_config

    try:
        webhooks = load_webhook_config(webhooks_path)
        policy = load_policy(policy_path) if policy_path is not None else None
    except CollectorError as exc:
        click.echo(f"error: {inert(exc)}", err=True)
        ctx.exit(EXIT_USAGE)
    return {"webhooks": webhooks, "webhooks_file": webhooks_path, "ear_key": ear_key, "policy": policy}


@serve_group.group("token")
def token_group() -> None:
    """Manage the service's API tokens (scopes: read, admin)."""


@token_group.command("add")
@click.argument("name")
@click.option("--scope", type=click.Choice([READ, ADMIN]), default=READ, show_default=True,
              help="read: every GET; admin: also uploads, trust-store and webhook changes.")
@click.pass_context
def token_add(ctx: click.Context, name: str, scope: str) -> None:
    """Add a token and print its secret once (only a salted hash is kept)."""
    try:
        tokens = Tokens.load(ctx.obj["tokens_path"])
        secret = tokens.add(name, scope)
    except ServiceError as exc:
        click.echo(f"error: {inert(exc)}", err=True)
        ctx.exit(EXIT_USAGE)
    click.echo(secret)
    click.echo(f"added token {name} (scope {scope}) to {tokens.path}; the secret above is not shown again",
               err=True)


@token_group.command("remove")
@click.argument("name")
@click.pass_context
def token_remove(ctx: click.Context, name: str) -> None:
    """Remove a token: requests with its secret are refused from the service's next start."""
    try:
        Tokens.load(ctx.obj["tokens_path"]).remove(name)
    except ServiceError as exc:
        click.echo(f"error: {inert(exc)}", err=True)
        ctx.exit(EXIT_USAGE)


@token_group.command("list")
@click.pass_context
def token_list(ctx: click.Context) -> None:
    """List the tokens (names, scopes, when made; never secrets)."""
    try:
        tokens = Tokens.load(ctx.obj["tokens_path"])
    except ServiceError as exc:
        click.echo(f"error: {inert(exc)}", err=True)
        ctx.exit(EXIT_USAGE)
    for token in tokens.tokens:
        click.echo(f"{token.name}\t{token.scope}\t{token.created}")
