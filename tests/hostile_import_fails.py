"""A module that fails while being imported (named as hostile_import_fails:X by tests/test_hostile.py)."""

raise SystemExit("importing this module exits")
