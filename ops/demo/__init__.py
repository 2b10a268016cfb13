"""The demo's synthetic documents and its runner."""
