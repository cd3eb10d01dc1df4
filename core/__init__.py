"""Visual anomaly detection dashboard: all logic, shared by the app, the CLI and the tests.

Nothing in this package imports streamlit.
"""
