"""``graspfleet.replay.v1``: generated from ``protos/graspfleet/replay/v1/replay.proto``."""
