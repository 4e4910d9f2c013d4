"""fx from Python, notebook style: plain functions run on fx, fanned out over many inputs.

Run it whole (`python examples/notebook/collatz.py` next to a running `fx up`), or cell by cell (`# %%`) in
Jupyter or VS Code. fx.Client() finds the gateway and token as the CLI does.
"""

# %% The client: the same settings as the CLI
import fx

client = fx.Client()
print("platform", client.platform_version())

# %% A plain function, its helper and the state it closes over, all shipped by value
LIMIT = 10_000


def step(n: int) -> int:
    return n // 2 if n % 2 == 0 else 3 * n + 1


@fx.function(memory=128, timeout=30, scale={"max": 4, "concurrency": 2}, client=client)
def collatz(n: int) -> int:
    """How many steps n takes to reach 1."""
    if n < 1 or n > LIMIT:
        raise ValueError(f"{n} is outside 1..{LIMIT}")
    steps = 0
    while n != 1:
        n, steps = step(n), steps + 1
    return steps


print("collatz(27) here:", collatz(27), "on fx:", collatz.remote(27))

# %% Fan out: values come back in input order
steps = collatz.map(range(1, 2001), progress=False)
longest = max(range(len(steps)), key=steps.__getitem__) + 1
print(f"of 1..2000, {longest} takes the most steps: {steps[longest - 1]}")

# %% A call in the background
call = collatz.spawn(97)
print("collatz(97) spawned:", call.get(timeout=60))

# %% Items that keep failing: the other values, and each failure with the function's own error
try:
    collatz.map([6, 0, 7, LIMIT + 1], retries=0, progress=False)
except fx.MapError as exc:
    print("partial results:", exc.results)
    for index, error in exc.failures:
        print(f"  input #{index} failed: {error.error_type}: {error.error_message}")
