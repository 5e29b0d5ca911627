"""Client side: synthetic cartoon cameras, recorded-clip replay, camera fleets, the demo and load tests."""
