"""The ranking service: FastAPI app that ranks lawyers for a case with the live LTR version.

`ltr_serving.app:app` is the ASGI app; `ltr_serving.server.serve` runs it under uvicorn.
"""
