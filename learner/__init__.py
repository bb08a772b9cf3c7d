"""Learner: the SAC update (shared force/position critic, SE(3) policy, per-channel learning
rates, behaviour cloning on demonstrations, KL to the previous tier), the curriculum controller,
and checkpoints. Pure PyTorch: it runs no service and knows no actor."""
