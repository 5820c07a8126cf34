"""The HTTP side of `prepaid-sync serve`: routers the app factory mounts."""
