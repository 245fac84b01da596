"""Tenants: companies, plans, per-company limits and quotas, usage per company."""
