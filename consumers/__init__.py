"""Where totals leave: downstream subscribers, rebuild and reconcile."""
