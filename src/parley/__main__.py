"""``python -m parley`` runs the CLI."""

from parley.cli.main import app

if __name__ == "__main__":
    app()
