"""The SQL databases. Per database, a pure dialect (`<db>_sql.py`: its SQL text and bound values,
its type mapping) and a connector (`<db>.py`: the connection, its session and errors) that runs
what the dialect builds. Shared: expressions.py and predicates.py (what a dialect supplies, key
conditions), base.py (SqlDialect: the statements), connector.py (SqlConnector: the reads) and
writer.py (repair's write transaction)."""
