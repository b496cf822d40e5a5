"""What the receiver and the aggregator share: settings, tables, wire types, logging."""
