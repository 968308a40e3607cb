"""Seeding, RNG state capture and safe file writing."""
