"""Benchmarks: each measures its baseline in the same run and writes JSON (`petstream bench ...`)."""
