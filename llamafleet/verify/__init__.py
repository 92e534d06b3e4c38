"""`invoke verify`: a pytest/testinfra suite proving the cluster is what the inventory says, and safe.

The checks are the `test_*.py` files of this package; `plugin.py` makes the testinfra hosts from the
inventory and reads every host's facts once; `report.py` runs the suite for the CLI and prints the summary.
"""
