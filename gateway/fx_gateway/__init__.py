"""fx gateway: the data plane."""
