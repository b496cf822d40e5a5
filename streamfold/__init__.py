"""The operator command: runs, inspects and exercises the receiver and the aggregator."""
