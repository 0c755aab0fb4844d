"""The operator's dashboard at `/dashboard`: server-rendered pages (Jinja2, plain forms, no
script), signed in with the admin token. Mounted by `http/app.py` only when a token is set."""
