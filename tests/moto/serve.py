"""moto's server, one request at a time.

`moto_server` serves requests on parallel threads, and moto's DynamoDB evaluates a
condition expression and writes the item without a lock: two concurrent conditional writes
on one item can both pass (a lost update DynamoDB itself never allows). Serving one request
at a time restores DynamoDB's per-item atomicity for the tests. Usage: serve.py HOST PORT
"""
import sys

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import run_simple

host, port = sys.argv[1], int(sys.argv[2])
run_simple(host, port, DomainDispatcherApplication(create_backend_app), threaded=False)
