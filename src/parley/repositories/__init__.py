"""Queries on an ``AsyncSession``. Repositories never commit; the unit of work does."""
