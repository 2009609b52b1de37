"""The Cynaps platform as a local reference server (FastAPI + SQLAlchemy Core).

Nothing is created at import: build an app with :func:`cynaps_data.server.app.create_app` or run
one with :class:`cynaps_data.server.platform.LocalPlatform`.
"""
