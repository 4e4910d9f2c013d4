"""A Flask app behind apig-wsgi, written as for AWS Lambda (REST API and ALB targets)."""

import hashlib

from apig_wsgi import make_lambda_handler
from flask import Flask, Response, abort, jsonify, make_response, request
from flask_cors import CORS

app = Flask(__name__)
CORS(app, origins=["https://app.example.com"], expose_headers=["X-Digest"], supports_credentials=True)


@app.get("/items/<int:item_id>")
def get_item(item_id: int):
    return jsonify(item_id=item_id, tags=request.args.getlist("tag"), path=request.path)


@app.get("/teapot")
def teapot():
    abort(418)


@app.get("/boom")
def boom():
    raise RuntimeError("unhandled in the app")


@app.get("/session")
def session():
    response = make_response(jsonify(user=request.cookies.get("user"), theme=request.cookies.get("theme")))
    response.set_cookie("seen", "yes", httponly=True)
    response.set_cookie("visits", "1", max_age=60)
    return response


@app.put("/blobs")
def upload():
    data = request.get_data()
    return jsonify(size=len(data), sha256=hashlib.sha256(data).hexdigest(), type=request.content_type)


@app.get("/blobs/<int:size>")
def download(size: int):
    data = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
    return Response(data, mimetype="application/octet-stream", headers={"X-Digest": hashlib.sha256(data).hexdigest()})


handler = make_lambda_handler(app, binary_support=True)
