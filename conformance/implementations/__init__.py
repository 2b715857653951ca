"""The implementations callgate ships or knows: the reference implementation and Wine."""
