"""DynamoDB as a store tablesync compares: its connector (connector.py), the canonical form of its
values (values.py) and its client's retry and read-budget rules (client.py). It is not a SQL
dialect: the engine compares it by scan and lookup (engine/scan_lookup.py)."""
