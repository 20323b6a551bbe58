"""Restoration of old scans: classical cleanup and the thesis levels."""
