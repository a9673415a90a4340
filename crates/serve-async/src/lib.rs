//! serve-async: Uvicorn's model for recon, the application served by tokio + hyper.
