"""Learner: SAC with the shared force/position critic, the SE(3) policy and the curriculum
controller; publishes weights to the control plane.

Empty until the actor–learner loop lands.
"""
