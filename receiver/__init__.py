"""The HTTP side: what uvicorn serves."""
