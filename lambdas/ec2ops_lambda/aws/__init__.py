"""Small AWS access modules: one lazily created client each, replaceable in tests."""
