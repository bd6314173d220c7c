"""One router per resource of the JSON API: requests (requests.py), queues and dead letters (operations.py), health."""
