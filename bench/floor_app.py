"""The bare floor: a Flask app with nothing but Flask, for the benchmark (bench/run.py).

    python -m gunicorn --workers 2 --worker-class sync --bind 127.0.0.1:PORT bench.floor_app:app

It answers the hook's URL path with what any Flask service must do at least: read the body with
Flask's own JSON parsing (`request.get_json()`) and answer `{"cards": []}`. The benchmark starts
it with the service's gunicorn worker settings (bench/service.py, `start_bare_floor`), so the
service is measured against the framework itself. It imports only Flask: none of the service's
code, middleware or garbage-collector settings.
"""

from flask import Flask, jsonify, request

app = Flask(__name__)


@app.post("/cds-services/order-select")
def order_select():
    request.get_json()  # Flask's own parsing: 415 unless the body is sent as application/json
    return jsonify(cards=[])
