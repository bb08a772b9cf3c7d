"""Generated protocol code of the replay data plane (``make protos`` from ``protos/``)."""
