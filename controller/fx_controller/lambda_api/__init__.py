"""Lambda's control-plane API on fx (README: "Use the AWS CLI and boto3"): one module per concern."""
