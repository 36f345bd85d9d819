"""Performance benchmark of the service against the bare framework (bench/floor_app.py): `python3 -m bench`."""
