"""The resource types served by the fake API server and their per-type behaviour flags."""

from __future__ import annotations

from dataclasses import dataclass

META_FIELDS = ("metadata.name", "metadata.namespace")


@dataclass(frozen=True)
class ResourceType:
    """One REST resource (plural) and the strategy switches the real apiserver has for it."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    singular: str = ""
    status: bool = False  # has a /status subresource
    generation: bool = False  # metadata.generation managed (1 on create, +1 on spec change)
    status_resets_meta: bool = False  # /status uses metav1.ResetObjectMetaForStatus
    create_on_update: bool = False  # AllowCreateOnUpdate
    unconditional_update: bool = True  # AllowUnconditionalUpdate
    # field selectors: None = only the generic metadata ones (default conversion func)
    fields: tuple[str, ...] | None = None
    short_names: tuple[str, ...] = ()
    key: str = ""  # name used by the Python API; defaults to plural

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def name(self) -> str:
        return self.key or self.plural

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"

    def supported_fields(self) -> tuple[str, ...]:
        return META_FIELDS if self.fields is None else self.fields


_POD_FIELDS = (
    "metadata.name",
    "metadata.namespace",
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.schedulerName",
    "spec.serviceAccountName",
    "spec.hostNetwork",
    "status.phase",
    "status.podIP",
    "status.podIPs",
    "status.nominatedNodeName",
)
_EVENT_FIELDS = (
    "metadata.name",
    "metadata.namespace",
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
)

RESOURCE_TYPES: tuple[ResourceType, ...] = (
    ResourceType(
        "", "v1", "namespaces", "Namespace", False, "namespace", status=True,
        fields=("metadata.name", "status.phase"), short_names=("ns",),
    ),
    ResourceType(
        "", "v1", "nodes", "Node", False, "node", status=True,
        fields=("metadata.name", "spec.unschedulable"), short_names=("no",),
    ),
    ResourceType(
        "", "v1", "pods", "Pod", True, "pod", status=True, generation=True,
        fields=_POD_FIELDS, short_names=("po",),
    ),
    ResourceType(
        "", "v1", "events", "Event", True, "event", create_on_update=True,
        fields=_EVENT_FIELDS, short_names=("ev",),
    ),
    ResourceType("", "v1", "configmaps", "ConfigMap", True, "configmap", short_names=("cm",)),
    ResourceType(
        "", "v1", "secrets", "Secret", True, "secret",
        fields=("metadata.name", "metadata.namespace", "type"),
    ),
    ResourceType(
        "resource.k8s.io", "v1", "resourceslices", "ResourceSlice", False, "resourceslice",
        generation=True, fields=("metadata.name", "spec.nodeName", "spec.driver"),
    ),
    ResourceType(
        "resource.k8s.io", "v1", "deviceclasses", "DeviceClass", False, "deviceclass",
        generation=True,
    ),
    ResourceType(
        "resource.k8s.io", "v1", "devicetaintrules", "DeviceTaintRule", False,
        "devicetaintrule", status=True, generation=True, status_resets_meta=True,
    ),
    ResourceType(
        "resource.k8s.io", "v1", "resourceclaims", "ResourceClaim", True, "resourceclaim",
        status=True, generation=True, status_resets_meta=True,
    ),
    ResourceType(
        "resource.k8s.io", "v1", "resourceclaimtemplates", "ResourceClaimTemplate", True,
        "resourceclaimtemplate",
    ),
    ResourceType(
        "coordination.k8s.io", "v1", "leases", "Lease", True, "lease",
        create_on_update=True, unconditional_update=False,
    ),
    ResourceType(
        "events.k8s.io", "v1", "events", "Event", True, "event", create_on_update=True,
        fields=("metadata.name", "metadata.namespace", "regarding.kind", "regarding.name",
                "regarding.namespace", "regarding.uid", "reason", "type",
                "reportingController"),
        short_names=("ev",), key="events.events.k8s.io",
    ),
)

GROUP_VERSIONS: tuple[tuple[str, str], ...] = (
    ("", "v1"),
    ("resource.k8s.io", "v1"),
    ("coordination.k8s.io", "v1"),
    ("events.k8s.io", "v1"),
)


class Registry:
    """Lookup of resource types by URL coordinates or by Python API name."""

    def __init__(self, types: tuple[ResourceType, ...] = RESOURCE_TYPES) -> None:
        self.types = types
        self._by_url = {(t.group, t.version, t.plural): t for t in types}
        self._by_name: dict[str, ResourceType] = {}
        for rt in types:
            self._by_name.setdefault(rt.name, rt)
            self._by_name.setdefault(rt.qualified, rt)

    def by_url(self, group: str, version: str, plural: str) -> ResourceType | None:
        return self._by_url.get((group, version, plural))

    def by_name(self, name: str) -> ResourceType:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"unknown resource {name!r}") from None

    def for_group_version(self, group: str, version: str) -> list[ResourceType]:
        return [t for t in self.types if t.group == group and t.version == version]
