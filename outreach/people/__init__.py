"""Huddles and their members: creating huddles, importing and exporting member lists, demo data."""
