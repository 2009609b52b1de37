"""The annotator workbench: static pages (``static/``), invites and the customer dashboard.

Pages are plain HTML/CSS/JS shipped in the package (no build step); they talk to the same
``/v1`` API as every other client. See ``docs/annotators.md``.
"""
