"""Planning: walk the trees, pair entries, decide per entry. Reads metadata, never writes."""
