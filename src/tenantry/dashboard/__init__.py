"""The admin dashboard: server-rendered pages under /admin, htmx for live refresh."""
