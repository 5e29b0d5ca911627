"""Training of the shipped sim-tiny model on the simulator's scenes (a development tool, not the server)."""
