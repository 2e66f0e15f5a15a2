"""Streamlit-side helpers shared by the pages (session state, URL state, job manager, widgets).

``kdcore`` never imports this package; the pages stay thin by calling into it.
"""
