"""fx runtime: runs unmodified AWS Lambda Python handlers."""
