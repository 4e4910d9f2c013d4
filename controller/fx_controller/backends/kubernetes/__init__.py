"""The kubernetes backend: each function version is a Deployment, each replica one of its pods."""
