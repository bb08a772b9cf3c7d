"""The MuJoCo grasp cell: model, randomization, tiers, sensing, reward, Gymnasium interfaces."""
