"""A Chalice app as Chalice's docs write one, unchanged: fx serves it through API routes (REST API events)."""

from chalice import BadRequestError, Chalice, NotFoundError, Response

app = Chalice(app_name="shop")

USERS = {"1": {"id": "1", "name": "ann"}}


@app.route("/")
def index():
    return {"hello": "world"}


@app.route("/users/{user_id}")
def get_user(user_id):
    if user_id not in USERS:
        raise NotFoundError(f"user {user_id} not found")
    return USERS[user_id]


@app.route("/users", methods=["POST"])
def create_user():
    body = app.current_request.json_body
    if not isinstance(body, dict) or "name" not in body:
        raise BadRequestError("name is required")
    return Response(body={"id": "2", "name": body["name"]}, status_code=201, headers={"Location": "/users/2"})


@app.route("/orders/{order_id}/items/{item_id}", methods=["GET", "PUT"])
def order_item(order_id, item_id):
    request = app.current_request
    return {"order": order_id, "item": item_id, "method": request.method, "query": request.query_params}


@app.route("/text")
def text():
    return Response(body="plain words", headers={"Content-Type": "text/plain", "X-Custom": "yes"})
