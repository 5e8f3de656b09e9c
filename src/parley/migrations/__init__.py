"""Alembic migrations, shipped inside the package so that `parley migrate` works wherever Parley is
installed, not only from a source checkout."""
