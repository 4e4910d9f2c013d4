"""Replica backends: how replicas are made. `local` runs processes on this host; `kubernetes` comes later."""
