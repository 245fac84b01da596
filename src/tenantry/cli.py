"""The command line: tenantry serve | db upgrade | keys create/list/revoke."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from tenantry import db as database
from tenantry.auth import KeyRecords, KeyStore
from tenantry.errors import TenantryError
from tenantry.settings import ConfigError, Settings, load_settings

app = typer.Typer(help="Tenantry: storage, jobs, query insight and resilience for tenants.")
db_app = typer.Typer(help="The project's own database tables.")
keys_app = typer.Typer(help="Company API keys.")
app.add_typer(db_app, name="db")
app.add_typer(keys_app, name="keys")

console = Console()
errors = Console(stderr=True)
T = TypeVar("T")


def settings_or_exit() -> Settings:
    try:
        return load_settings()
    except ConfigError as exc:
        errors.print(f"[red]Configuration error:[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


def run_with_keys(action: Callable[[KeyStore], Awaitable[T]]) -> T:
    settings = settings_or_exit()
    url = settings.effective_database_url
    database.upgrade(url)

    async def main() -> T:
        db = database.Database(url)
        try:
            return await action(KeyStore(KeyRecords(db), admin_token=None))
        finally:
            await db.dispose()

    try:
        return asyncio.run(main())
    except TenantryError as exc:
        errors.print(f"[red]Error:[/red] {exc.message}", highlight=False)
        raise typer.Exit(1) from None


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to bind.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
    demo: Annotated[
        bool, typer.Option("--demo", help="Fill an empty service with demo data first.")
    ] = False,
) -> None:
    """Run the management API and the admin dashboard."""
    from tenantry.app import create_app
    from tenantry.server import serve as run

    settings = settings_or_exit()
    run(create_app(settings, demo=demo), settings, host or settings.host, port or settings.port)


@app.command()
def worker(
    queues: Annotated[
        str | None, typer.Option(help="Comma-separated queues to process (default: all six).")
    ] = None,
    processes: Annotated[int, typer.Option(min=1, max=64, help="Worker processes to run.")] = 1,
) -> None:
    """Run the job workers (needs Redis). SIGTERM finishes active jobs, then exits."""
    from tenantry.worker import WorkerConfigError, parse_queues, run_processes

    settings = settings_or_exit()
    try:
        code = run_processes(settings, parse_queues(queues), processes)
    except WorkerConfigError as exc:
        errors.print(f"[red]Error:[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    raise typer.Exit(code)


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "heads",
) -> None:
    """Apply the migrations of Tenantry's own tables."""
    from tenantry.queries.explain_role import ensure_explain_role

    settings = settings_or_exit()
    url = settings.effective_database_url
    database.upgrade(url, revision)
    console.print(f"Database upgraded to {revision}.")
    problem = ensure_explain_role(url, settings.explain_role, settings.explain_schema_list)
    if problem:
        errors.print(f"[yellow]Warning:[/yellow] {problem}", highlight=False, soft_wrap=True)


@keys_app.command("create")
def keys_create(
    company: Annotated[str, typer.Option(help="The company the key belongs to.")],
    name: Annotated[str, typer.Option(help="A label for the key.")] = "",
) -> None:
    """Create a company key. The key is printed once; only its digest is stored."""
    plain, info = run_with_keys(lambda keys: keys.create(company, name))
    console.print(f"Key {info.id} for company {info.company_id}:")
    print(plain)


@keys_app.command("list")
def keys_list(
    company: Annotated[str | None, typer.Option(help="Only this company's keys.")] = None,
) -> None:
    """List keys (never their secrets)."""
    infos = run_with_keys(lambda keys: keys.list(company))
    table = Table("id", "company", "name", "created", "revoked")
    for info in infos:
        revoked = info.revoked_at.isoformat(timespec="seconds") if info.revoked_at else ""
        created = info.created_at.isoformat(timespec="seconds")
        table.add_row(info.id, info.company_id, info.name, created, revoked)
    console.print(table)


@keys_app.command("revoke")
def keys_revoke(key_id: Annotated[str, typer.Argument(help="The key's id.")]) -> None:
    """Revoke a key: it stops working at once."""
    info = run_with_keys(lambda keys: keys.revoke(key_id))
    console.print(f"Key {info.id} of company {info.company_id} revoked.")


@app.command("migrate-storage")
def migrate_storage(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List what would move.")] = False,
    verify: Annotated[
        bool, typer.Option("--verify", help="Check size and SHA-256 of every file at the target.")
    ] = False,
    switch: Annotated[
        bool, typer.Option("--switch", help="After a clean verify, point records at the target.")
    ] = False,
    concurrency: Annotated[int, typer.Option(min=1, max=64, help="Files in flight.")] = 8,
    retries: Annotated[int, typer.Option(min=0, max=10, help="Retries per file.")] = 3,
) -> None:
    """Copy every local file to the configured cloud provider; rerun to resume."""
    from tenantry.storage.command import Mode
    from tenantry.storage.command import migrate_storage as run

    if dry_run + verify + switch > 1:
        errors.print("Choose one of --dry-run, --verify, --switch.")
        raise typer.Exit(2)
    mode: Mode = "dry-run" if dry_run else "verify" if verify else "switch" if switch else "copy"
    code = run(settings_or_exit(), mode, concurrency=concurrency, retries=retries, console=console)
    raise typer.Exit(code)
