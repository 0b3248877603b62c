"""Custom Streamlit components of the map app."""
