"""Ports (small Protocols) and their adapters, one folder per port; chosen by settings."""
