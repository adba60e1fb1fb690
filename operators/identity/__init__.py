"""Identity: who a customer is. Identifiers stitched into profiles (the graph, merge
protection, limits), canonical customer ids, event-time order across input partitions, and
what a merge does to the two customers' contexts."""
