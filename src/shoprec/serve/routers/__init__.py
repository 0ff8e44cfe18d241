"""The /v1 routers, one per resource, and the web page's routes."""
