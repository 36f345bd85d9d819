"""What an operations team runs the service by: probes (`health`), Prometheus metrics (`metrics`)."""
