"""gRPC ingest: the server, one session per camera stream, the PyAV decoder per session."""
