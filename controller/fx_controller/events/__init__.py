"""Events for the admin API: dead letters, users' streams and buckets, test messages."""
