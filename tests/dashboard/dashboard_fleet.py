"""Constants the dashboard tests share with their fixtures (conftest.py)."""

#: Device text a hostile router could send: markup, a right-to-left override, a C1 control.
HOSTILE_USER = "<script>alert(1)</script>\u202eevil\x9b"
