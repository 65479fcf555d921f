"""providers vectors package."""
