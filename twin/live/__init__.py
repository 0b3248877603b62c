"""The live twin: changes to records as events in the store, the state as of any date, and the delta index."""
