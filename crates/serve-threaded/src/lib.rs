//! serve-threaded: Waitress's model for recon, one may I/O dispatcher feeding a fixed pool of worker threads.
