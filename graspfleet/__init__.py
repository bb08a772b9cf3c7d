"""graspfleet: a distributed actor–learner service that trains robotic grasping policies.

This package holds what actors and learner share: configuration, the observation/action
spec, the simulator interfaces and the MuJoCo grasp cell, and the ``graspfleet`` CLI.
"""

__version__ = "0.1.0"
