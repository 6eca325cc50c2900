"""The portal's Content-Security-Policy: its own styles and images, no scripts, forms to itself
only. (A module of its own so that a page that needs more — the receipt's print script — can
extend it without importing the app.)"""

CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "base-uri 'none'; frame-ancestors 'none'"
)
