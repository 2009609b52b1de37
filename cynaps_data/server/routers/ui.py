"""The workbench pages (``/ui/…``) and the customer's read-only project dashboard API.

Pages are static files from ``cynaps_data/server/ui/static`` (and each annotation type's widget
module at ``/ui/widgets/<type>.js``) served with a strict
Content-Security-Policy: scripts only from this origin (no inline script, no eval), images from
this origin, http(s) URLs or ``blob:`` (asset bytes the page read with the session key), API calls only to this origin, no framing, no plugins.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from fastapi import APIRouter
from fastapi.responses import RedirectResponse, Response

from ...types import get_type
from ..deps import DB, Customer
from ..problems import not_found
from ..ui import dashboard

router = APIRouter(tags=["ui"])

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: https: http:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cache-Control": "no-cache",
}
MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}
PAGES = {
    "": "annotate.html",
    "review": "review.html",
    "dashboard": "dashboard.html",
    # the customer console (issue 17): Projects is the dashboard
    "projects": "dashboard.html",
    "billing": "billing.html",
    "settings": "settings.html",
}


@cache
def _static() -> dict[str, tuple[bytes, str]]:
    """Every shipped static file by name, read once: ``{name: (content, media type)}``."""
    files = {}
    for entry in resources.files("cynaps_data.server.ui").joinpath("static").iterdir():
        suffix = "." + entry.name.rpartition(".")[2]
        if entry.is_file() and suffix in MEDIA_TYPES:
            files[entry.name] = (entry.read_bytes(), MEDIA_TYPES[suffix])
    return files


def _file(name: str) -> Response:
    found = _static().get(name)
    if found is None:
        raise not_found("file", name)
    content, media_type = found
    return Response(content, media_type=media_type, headers=SECURITY_HEADERS)


@router.get("/ui", include_in_schema=False)
def ui_root() -> RedirectResponse:
    return RedirectResponse("/ui/", status_code=308)


@router.get("/ui/", include_in_schema=False)
def annotate_page() -> Response:
    return _file(PAGES[""])


@router.get("/ui/static/{name}", include_in_schema=False)
def static_file(name: str) -> Response:
    return _file(name)


@router.get("/ui/widgets/{name}.js", include_in_schema=False)
def widget(name: str) -> Response:
    """The workbench widget module of the annotation type ``name`` (its ``widget()`` file)."""
    try:
        source = get_type(name).widget()
    except KeyError:
        raise not_found("widget", name) from None
    return Response(source.read_bytes(), media_type=MEDIA_TYPES[".js"], headers=SECURITY_HEADERS)


@router.get("/ui/{page}", include_in_schema=False)
def page(page: str) -> Response:
    """``/ui/`` annotate, ``/ui/review`` expert review, ``/ui/dashboard`` customer dashboard."""
    if page not in PAGES or not page:
        raise not_found("page", page)
    return _file(PAGES[page])


@router.get("/v1/projects/{project_id}/dashboard", tags=["projects"])
def project_dashboard(db: DB, caller: Customer, project_id: str) -> dict:
    """Progress, agreement histogram, final-label counts and per-annotator counts (read-only)."""
    return dashboard.summary(db, caller.account_id, project_id)
