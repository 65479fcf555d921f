"""providers llm package."""
