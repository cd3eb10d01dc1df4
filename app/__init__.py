"""The Streamlit app: entry point, sign-in and shared widgets. Page logic lives in core/."""
