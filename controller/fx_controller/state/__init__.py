"""What the controller keeps in NATS: function records, code zips, route tables."""
