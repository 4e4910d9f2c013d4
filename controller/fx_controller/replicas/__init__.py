"""How many replicas run and which: load, autoscaling, the fleet, activation, replica tokens."""
