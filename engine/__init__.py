"""journeyman's engine: the pure core (`engine.core.advance`), the runtime around it,
and the testing kit (`engine.testing`)."""
