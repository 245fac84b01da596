"""The command line: tenantry serve | worker | db upgrade | keys create/list/revoke |
flags import/export | migrate-storage."""

from __future__ import annotations

import asyncio
import atexit
import json
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from tenantry.errors import TenantryError

# Each command imports what it uses: a CLI run is a fresh interpreter, and the database,
# Redis and the service are most of its start-up (`--help` and a bad setting need none).
if TYPE_CHECKING:
    from tenantry import db as database
    from tenantry.auth import KeyStore
    from tenantry.resilience.service import FlagService
    from tenantry.settings import Settings

app = typer.Typer(help="Tenantry: storage, jobs, query insight and resilience for tenants.")
db_app = typer.Typer(help="The project's own database tables.")
keys_app = typer.Typer(help="Company API keys.")
flags_app = typer.Typer(help="Feature flags as Unleash client-features documents.")
app.add_typer(db_app, name="db")
app.add_typer(keys_app, name="keys")
app.add_typer(flags_app, name="flags")

console = Console()
errors = Console(stderr=True)
T = TypeVar("T")


def main() -> None:
    """The `tenantry` command: `app`, ending the process itself once obstore has run."""
    try:
        app(prog_name="tenantry")
    except SystemExit as done:
        if "obstore" not in sys.modules:
            raise
        exit_before_finalizing(done.code)


def exit_before_finalizing(code: str | int | None) -> None:
    """Exit with `code` after the atexit handlers, without finalizing the interpreter.

    obstore's Tokio threads may still be resolving a future Python dropped when the
    interpreter finalizes; one then panics on the dead interpreter and Rust aborts the
    process (SIGABRT, after the command has done its work and printed its result: the
    known pyo3-async-runtimes race, obstore 0.12.1). Skipping finalization is the only
    exit the race cannot reach; atexit still flushes logs and exports pending spans.
    """
    if isinstance(code, str):
        errors.print(code, highlight=False)
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code if isinstance(code, int) else 1 if code else 0)


def settings_or_exit() -> Settings:
    from tenantry.settings import ConfigError, load_settings

    try:
        return load_settings()
    except ConfigError as exc:
        errors.print(f"[red]Configuration error:[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


def run_with_database(action: Callable[[database.Database], Awaitable[T]]) -> T:
    """`action` on the configured database (migrated first); a TenantryError exits 1."""
    from tenantry import db as database

    settings = settings_or_exit()
    url = settings.effective_database_url
    database.upgrade(url)

    async def main() -> T:
        db = database.Database(url)
        try:
            return await action(db)
        finally:
            await db.dispose()

    try:
        return asyncio.run(main())
    except TenantryError as exc:
        errors.print(f"[red]Error:[/red] {exc.message}", highlight=False)
        raise typer.Exit(1) from None


def run_with_keys(action: Callable[[KeyStore], Awaitable[T]]) -> T:
    from tenantry.auth import KeyRecords, KeyStore

    return run_with_database(lambda db: action(KeyStore(KeyRecords(db), admin_token=None)))


def run_with_flags(action: Callable[[FlagService], Awaitable[T]]) -> T:
    from tenantry.resilience.service import FlagService
    from tenantry.resilience.stores.database import DatabaseFlagStore
    from tenantry.resilience.stores.memoized import MemoizedStore

    async def with_flags(db: database.Database) -> T:
        flags = FlagService(MemoizedStore(DatabaseFlagStore(db)))
        await flags.refresh()
        return await action(flags)

    return run_with_database(with_flags)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to bind.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
    demo: Annotated[
        bool, typer.Option("--demo", help="Fill an empty service with demo data first.")
    ] = False,
) -> None:
    """Run the management API and the admin dashboard."""
    settings = settings_or_exit()  # a bad setting is told before the service is imported
    from tenantry.app import create_app
    from tenantry.server import serve as run
    from tenantry.settings import ConfigError

    try:
        application = create_app(settings, demo=demo)
    except ConfigError as exc:  # tracing switched on but not installed (docs/tracing.md)
        from rich.markup import escape  # the message names `tenantry[otel]`

        message = escape(str(exc))
        errors.print(f"[red]Configuration error:[/red] {message}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    run(application, settings, host or settings.host, port or settings.port)


@app.command()
def worker(
    queues: Annotated[
        str | None, typer.Option(help="Comma-separated queues to process (default: all six).")
    ] = None,
    processes: Annotated[int, typer.Option(min=1, max=64, help="Worker processes to run.")] = 1,
) -> None:
    """Run the job workers (needs Redis). SIGTERM finishes active jobs, then exits."""
    settings = settings_or_exit()
    from tenantry.worker import WorkerConfigError, parse_queues, run_processes

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
    from tenantry import db as database
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


@flags_app.command("import")
def flags_import(
    file: Annotated[Path, typer.Argument(help="An Unleash client features document; '-': stdin.")],
) -> None:
    """Import flags and segments: same names replaced, the rest untouched, all or nothing.

    Running services pick the change up within FLAGS_REFRESH_SECONDS.
    """
    try:
        text = sys.stdin.read() if str(file) == "-" else file.read_text(encoding="utf-8")
        document: Any = json.loads(text)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        errors.print(f"[red]Error:[/red] cannot read {file}: {exc}", highlight=False)
        raise typer.Exit(1) from None
    imported = run_with_flags(lambda flags: flags.import_document(document, actor="cli"))
    console.print(f"Imported {imported} feature flag(s).")


@flags_app.command("export")
def flags_export() -> None:
    """Print every flag and segment as an Unleash client features document (JSON)."""

    async def export(flags: FlagService) -> dict[str, Any]:
        return flags.export_document()

    print(json.dumps(run_with_flags(export), indent=2, ensure_ascii=False))


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
