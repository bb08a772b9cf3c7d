"""Replay: the sharded gRPC replay service (storage, samplers, remover, rate limiter) and
its writer/sampler clients.

Empty until the replay service lands.
"""
