"""The journey language: models, loader, linter, compiler and templates."""
