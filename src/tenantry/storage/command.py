"""`tenantry migrate-storage`: the migration with a Rich progress bar and plain exit codes.

Exit codes: 0 done (or verified clean), 1 a file failed to copy or verify (each is
listed), 2 the configuration cannot migrate (no cloud provider configured).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from typing import Literal, TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from tenantry import db as database
from tenantry.errors import Conflict
from tenantry.settings import Settings
from tenantry.storage.backends import LocalBackend, backend_from_settings
from tenantry.storage.migrate import Mismatch, StorageMigration
from tenantry.storage.signing import UrlSigner

Mode = Literal["copy", "dry-run", "verify", "switch"]
T = TypeVar("T")


def migrate_storage(
    settings: Settings,
    mode: Mode,
    *,
    concurrency: int,
    retries: int,
    console: Console,
) -> int:
    if settings.storage_provider == "local":
        console.print(
            "[red]Nothing to migrate to:[/red] set STORAGE_PROVIDER to s3 or cloudflare-r2 "
            "(with its credentials); files are copied from UPLOAD_DIR to that provider."
        )
        return 2
    url = settings.effective_database_url
    database.upgrade(url)

    async def main() -> int:
        db = database.Database(url)
        signer = UrlSigner(secrets.token_urlsafe(32))  # the migration signs no URL
        source = LocalBackend(settings.upload_dir, signer, settings.storage_local_url)
        target = backend_from_settings(settings, signer, settings.storage_provider)
        migration = StorageMigration(db, source, target, concurrency=concurrency, retries=retries)
        try:
            return await _run(migration, mode, console)
        finally:
            await target.close()
            await db.dispose()

    return asyncio.run(main())


async def _run(migration: StorageMigration, mode: Mode, console: Console) -> int:
    source, target = migration.source.name, migration.target.name
    if mode == "dry-run":
        return await _dry_run(migration, console)
    if mode == "copy":
        files, size = await migration.count([source])
        report = await _with_progress(console, f"Copying to {target}", files, size, migration.copy)
        console.print(
            f"Copied {report.copied}, skipped {report.skipped} already copied and verified, "
            f"failed {len(report.failed)}, not attempted {report.not_attempted}."
        )
        for key, problem in sorted(report.failed.items()):
            console.print(f"  [red]failed[/red] {key}: {problem}", highlight=False, soft_wrap=True)
        if report.stopped_early:
            console.print(
                f"[red]Stopped early:[/red] {report.stopped_early}. "
                f"Run migrate-storage again once {target} answers; copied files are kept.",
                highlight=False,
                soft_wrap=True,
            )
            return 1
        if report.failed:
            console.print("Run migrate-storage again to retry the failed files.")
            return 1
        console.print("Next: tenantry migrate-storage --verify, then --switch.")
        return 0
    files, size = await migration.count([source, target])
    label = f"Verifying at {target}"
    if mode == "verify":
        verified = await _with_progress(console, label, files, size, migration.verify)
        return _report_verify(console, target, verified.checked, verified.mismatches)
    try:
        verified, switched = await _with_progress(console, label, files, size, migration.switch)
    except Conflict as exc:
        console.print(f"[red]Not switched:[/red] {exc.message}", highlight=False, soft_wrap=True)
        for item in exc.details or []:
            console.print(
                f"  [red]mismatch[/red] {item['key']}: {item['problem']}", highlight=False
            )
        return 1
    console.print(
        f"Verified {verified.checked} files; {switched} records now point at {target}. "
        f"Local copies in the upload directory are left in place."
    )
    return 0


async def _dry_run(migration: StorageMigration, console: Console) -> int:
    plan = await migration.plan()
    table = Table("company", "files", "bytes", title=f"{plan.source} → {plan.target}")
    for company, item in plan.companies.items():
        table.add_row(company, str(item.files), f"{item.bytes:,}")
    table.add_row("[bold]total[/bold]", str(plan.files), f"{plan.bytes:,}")
    console.print(table)
    console.print(
        f"{plan.files} files ({plan.bytes:,} bytes) would be copied to {plan.target}; "
        f"{plan.already_copied} are already copied and verified and would be skipped. "
        "Dry run: nothing was written."
    )
    return 0


def _report_verify(console: Console, target: str, checked: int, mismatches: list[Mismatch]) -> int:
    if not mismatches:
        console.print(f"All {checked} files verified at {target}: same size and SHA-256.")
        return 0
    console.print(f"[red]{len(mismatches)} of {checked} files differ at {target}:[/red]")
    for mismatch in mismatches:
        console.print(
            f"  [red]mismatch[/red] {mismatch.key}: {mismatch.problem}",
            highlight=False,
            soft_wrap=True,
        )
    console.print("Run migrate-storage again to copy them, then --verify.")
    return 1


async def _with_progress(
    console: Console,
    label: str,
    files: int,
    size: int,
    action: Callable[[Callable[[int], None]], Awaitable[T]],
) -> T:
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    done = 0
    with Progress(*columns, console=console) as progress:
        task = progress.add_task(f"{label}: 0/{files} files", total=max(size, 1))

        def advance(file_bytes: int) -> None:
            nonlocal done
            done += 1
            progress.update(task, advance=file_bytes, description=f"{label}: {done}/{files} files")

        return await action(advance)
