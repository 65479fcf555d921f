"""providers cache package."""
