"""The application factory: wires the services together and manages their lifecycles."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as dist_version

from aiohttp import web

from . import services
from .config import Settings
from .drivers import registry as drivers
from .drivers.contract import BindingDriver, EventSource, FaultInjector, InventoryDriver
from .events import resources as event_resources
from .events import sse
from .events.hub import EventHub
from .mockups import service as mockup_service
from .mockups.driver import MockupDriver
from .protocol import dispatch, middleware, wire
from .resources import (
    accounts,
    composition_service,
    fabrics,
    inventory,
    managers,
    pool,
    registries,
    reservations,
    service_root,
    sessions,
    tasks,
)
from .resources.bootstrap import bootstrap, bootstrap_schema_files
from .resources.composer import Composer
from .resources.health import HealthMonitor
from .resources.kind import Kinds
from .resources.task_runner import TaskRunner
from .security.accounts import Accounts
from .security.auth import authenticate
from .security.sessions import Sessions
from .store import Backend, SqliteBackend, Store

log = logging.getLogger("redfish_service")

STATE_FILE = "state.sqlite3"


def product_version() -> str:
    try:
        return dist_version("redfish-composer")
    except PackageNotFoundError:
        return "0.0.0"


def default_kinds() -> Kinds:
    kinds = Kinds()
    for module in (service_root, accounts, sessions, managers, tasks, registries, inventory,
                   pool, fabrics, composition_service, reservations, event_resources):
        for kind in module.KINDS:
            kinds.add(kind)
    return kinds


def create_app(
    settings: Settings,
    *,
    backend: Backend | None = None,
    on_admin_password: Callable[[str], None] | None = None,
    driver: InventoryDriver | None = None,
) -> web.Application:
    """Build the service. ``backend`` defaults to SQLite in the settings' state directory."""
    wire.accept_any_method()
    app = web.Application(
        middlewares=[middleware.errors, middleware.request_rules, authenticate],
        client_max_size=settings.max_body_bytes,
    )
    app[services.SETTINGS] = settings
    app[services.KINDS] = default_kinds()
    sse.setup_routes(app)  # before the dispatcher's catch-all route
    dispatch.setup_routes(app)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        store_backend = backend or SqliteBackend(settings.state_dir / STATE_FILE)
        store = Store(store_backend)
        await store.open()
        app[services.STORE] = store
        accounts_service = Accounts(store)
        app[services.ACCOUNTS] = accounts_service
        sessions_service = Sessions(store, accounts_service, settings.max_sessions)
        app[services.SESSIONS] = sessions_service
        # A mockup seeds the store at first start; its documents are the inventory.
        serving_mockup = await mockup_service.seed(store, settings.mockup)
        generated = await bootstrap(store, settings, product_version())
        if generated is not None and on_admin_password is not None:
            on_admin_password(generated)
        if serving_mockup:
            await mockup_service.layer(store)
            # the documents are the inventory: a rack driver (the CLI's default) has no part
            fabric = driver if isinstance(driver, MockupDriver) else MockupDriver()
            fabric.attach(store)  # what is attached to what: as the documents say
        else:
            fabric = driver or drivers.load("simulated")
            found = await fabric.discover()
            await inventory.reconcile(store, found)
            await pool.reconcile(store, found)
            await fabrics.reconcile(store, found)
        if not isinstance(fabric, BindingDriver):
            raise TypeError(f"driver {type(fabric).__name__} cannot bind devices")
        composer = Composer(store, fabric, timeout_s=settings.driver_timeout_s)
        app[services.COMPOSER] = composer
        await composer.recover()
        await composer.start()  # reservations end on time
        # Device health follows the driver's events (after recovery, so it sees the
        # settled blocks); the fault actions are listed if the driver can inject.
        monitor = HealthMonitor(store, fabric) if isinstance(fabric, EventSource) else None
        if monitor is not None:
            await monitor.start()
        if isinstance(fabric, FaultInjector):
            app[managers.FAULT_INJECTOR] = fabric
        await managers.advertise_faults(store, isinstance(fabric, FaultInjector))
        task_runner = TaskRunner(store, settings)
        await task_runner.start()  # after recovery: tasks it cut short are marked so
        app[services.TASK_RUNNER] = task_runner
        await bootstrap_schema_files(store)
        sessions_service.load()
        sessions_service.start()
        # events follow the change feed from here on
        events = EventHub(store, heartbeat_unit_s=settings.heartbeat_unit_s,
                          sends_per_s=settings.event_sends_per_s)
        await events.start()
        app[services.EVENTS] = events
        log.info("service ready", extra={"documents": len(store), "seq": store.seq})
        yield
        await events.stop()
        await composer.stop()
        await task_runner.stop()
        if monitor is not None:
            await monitor.stop()
        await sessions_service.stop()
        await store.close()

    app.cleanup_ctx.append(lifecycle)
    return app
