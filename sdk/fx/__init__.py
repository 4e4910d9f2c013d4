"""The fx SDK: the CLI, the Python client, and the admin-API models and protocols shared by fx components."""
