"""Online learning: bandit and slate policies, off-policy estimators, simulators with known ground truth, recovering rewards."""
