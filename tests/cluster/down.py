"""`python -m tests.cluster.down`: remove everything cluster-up created (see state.py)."""

from tests.cluster import state

if __name__ == "__main__":
    state.teardown()
