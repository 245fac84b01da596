"""A plain worker process with a handler of its own: see worker.py."""
