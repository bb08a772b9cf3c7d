"""The action pipeline: Cartesian policy outputs → joint commands that never leave the limits."""
