"""providers embeddings package."""
