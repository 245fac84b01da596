"""Applications that embed Tenantry, each run by tests/test_examples.py."""
