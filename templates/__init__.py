"""Jinja templates, one folder per feature, shipped in the wheel as package data.

Nothing here is Python but this marker: code finds the folders with ``importlib.resources``
(``outreach.app.resources``), so an installed wheel renders the same pages as a checkout.
"""
