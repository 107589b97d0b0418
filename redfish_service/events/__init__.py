"""The EventService: subscriptions, push delivery and server-sent events, all fed by the
store's change feed (see ``docs/architecture.md``, "Events")."""
