"""The journey language: models, loader, linter, compiler and templates; the bundled
journeys live in `journeys/library/` (`journeys.library.bundled_library()`)."""
