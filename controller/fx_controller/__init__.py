"""fx controller: the control plane."""
