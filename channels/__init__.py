"""Delivery adapters behind the Channel port (engine/ports.py)."""
