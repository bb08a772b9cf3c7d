"""Actors: Ray actors that run randomized grasp cells (``SimActor``) and real-arm proxies
(``ArmProxy``) and stream trajectories to the replay shards.

Empty until the actor–learner loop lands; the simulator they run is ``graspfleet.sim``.
"""
