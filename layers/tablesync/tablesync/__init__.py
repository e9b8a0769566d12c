"""tablesync: find and fix drift between copies of a database table."""

__version__ = "0.1.0"
