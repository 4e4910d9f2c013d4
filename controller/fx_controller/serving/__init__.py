"""Which versions serve: the readiness gate, traffic splits, aliases, rollouts."""
