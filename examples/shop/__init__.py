"""A small shop that embeds Tenantry: see app.py."""
