"""FastAPI front door: HTTP routes and the WebSocket gateway."""
