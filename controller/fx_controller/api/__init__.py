"""The admin API: routes, the token guard, the one error shape."""
