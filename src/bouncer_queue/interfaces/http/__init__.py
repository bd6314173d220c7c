"""The HTTP API (JSON under /api/v1) and the dashboard (at /), served by `bouncer-queue serve`.

app.py builds the FastAPI app over one QueueManager; auth.py checks API tokens and scopes; deps.py holds the
dependency aliases the routes take; schemas.py the request and response models; uploads.py spools an uploaded
list to a temporary file under the size limit; routes/ has one router per resource.
"""
