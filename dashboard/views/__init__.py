"""The dashboard's pages: each file is a Streamlit page script that app.py registers with st.navigation."""
