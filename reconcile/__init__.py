"""reconcile: audience-as-code for email platforms."""
