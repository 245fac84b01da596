"""Contract suites, shipped so a user can run them against their own implementations.

Each module holds one contract (a backend or store interface) as plain async checks
that take the implementation under test; Tenantry's own tests run the same suites
against every backend it ships.
"""
