"""Code generated from protos/graspfleet/replay/v1/replay.proto by `make protos` (not committed)."""
