"""A FastAPI app behind Mangum, written as for AWS Lambda (API Gateway HTTP API)."""

import hashlib
from typing import Annotated

from fastapi import Cookie, FastAPI, HTTPException, Query, Request, Response
from fastapi.middleware.cors import CORSMiddleware
from mangum import Mangum

app = FastAPI()
app.add_middleware(
    CORSMiddleware,
    allow_origins=["https://app.example.com"],
    allow_methods=["GET", "POST", "PUT"],
    allow_headers=["content-type", "x-api-key"],
    expose_headers=["x-digest"],
)


@app.get("/items/{item_id}")
def get_item(item_id: int, tag: Annotated[list[str] | None, Query()] = None) -> dict:
    return {"item_id": item_id, "tags": tag or []}


@app.get("/teapot")
def teapot() -> None:
    raise HTTPException(status_code=418, detail="short and stout")


@app.get("/boom")
def boom() -> None:
    raise RuntimeError("unhandled in the app")


@app.get("/session")
def session(
    response: Response, user: Annotated[str | None, Cookie()] = None, theme: Annotated[str | None, Cookie()] = None
):
    response.set_cookie("seen", "yes", httponly=True)
    response.set_cookie("visits", "1", max_age=60)
    return {"user": user, "theme": theme}


@app.put("/blobs")
async def upload(request: Request) -> dict:
    data = await request.body()
    return {"size": len(data), "sha256": hashlib.sha256(data).hexdigest(), "type": request.headers["content-type"]}


@app.get("/blobs/{size}")
def download(size: int) -> Response:
    data = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
    return Response(data, media_type="application/octet-stream", headers={"x-digest": hashlib.sha256(data).hexdigest()})


handler = Mangum(app, lifespan="off")
