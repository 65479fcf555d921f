"""Routers: parse, authorize, delegate, shape the response."""
