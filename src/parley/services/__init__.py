"""Use cases. Services talk to ports and repositories, never to HTTP."""
