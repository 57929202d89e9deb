"""Unit tests of the resize drive loop, lock and finish steps."""
