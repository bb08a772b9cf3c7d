"""Actors: what runs grasp cells and streams their trajectories.

``SimActor`` (randomized MuJoCo cells + the safe action pipeline + a CPU policy copy + one replay
sink per cell), its exploration noise, the weight prefetcher, deterministic evaluation, the
scripted expert's demonstrations, and the transition's replay signature. The Ray process that
hosts an actor is orchestration's (``orchestrator.actor_worker``); real-arm proxies join here
(issue 24).
"""
