"""Durable job execution: the in-process runner and the ``parley worker`` loop."""
