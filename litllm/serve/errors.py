"""Errors of `litllm serve` as clients see them: a 4xx or 5xx status and a JSON body that both OpenAI clients and
FastAPI/nanochat clients read: {"error": {"message", "type", "param", "code"}, "detail": "<message>"}."""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse

NO_MODEL = (
    'no model loaded; POST /api/load_model {"model_type": NAME} or {"model_path": PATH} first '
    "(GET /api/models lists what can be loaded)"
)


class APIError(Exception):
    """An error a client caused or must know about; answered with an OpenAI-shaped JSON body."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code

    def response(self) -> JSONResponse:
        return error_response(self.status, self.message, self.param, self.code)


def error_response(status: int, message: str, param: str | None = None, code: str | None = None) -> JSONResponse:
    body = {"error": error_body(status, message, param, code), "detail": message}
    return JSONResponse(body, status_code=status)


def error_body(status: int, message: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    kind = "invalid_request_error" if status < 500 else "server_error"
    if status == 401:
        kind = "authentication_error"
    return {"message": message, "type": kind, "param": param, "code": code}
