"""The single-node Kubernetes test harness (issue 4): build, images, cluster-up, cluster-down."""
