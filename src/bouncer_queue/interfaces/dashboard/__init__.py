"""The dashboard: server-rendered pages (Jinja2, no JavaScript build) over the same QueueManager calls as the API."""
