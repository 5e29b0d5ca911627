"""petstream: the `petstream` command dispatcher (each layer owns its own subcommands)."""
