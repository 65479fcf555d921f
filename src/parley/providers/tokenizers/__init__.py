"""providers tokenizers package."""
