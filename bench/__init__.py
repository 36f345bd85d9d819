"""Performance benchmark of the service against its framework floor: `python3 -m bench`."""
