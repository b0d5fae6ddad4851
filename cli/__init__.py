"""The ``outreach`` command line: the outermost layer, the only one that imports every package."""
