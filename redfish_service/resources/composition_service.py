"""The CompositionService resource: its settings and the ``Compose`` action.

``Compose`` takes a manifest of stanzas and carries them out as one operation:

* ``Preview``: each stanza's outcome (the system it would make, or its error) in the
  stanza's ``Response``; nothing changes.
* ``PreviewReserve``: the same, and if every stanza can be done, the blocks they would use
  are reserved for the caller (a CompositionReservation, ``ReservationId`` in the answer,
  holding the manifest resolved to those blocks).
* ``Apply``: all stanzas or none. With ``ReservationId``, the reserved manifest is carried
  out on exactly the blocks the preview chose.

Stanzas: ``ComposeSystem`` (a ComputerSystem request: specific, constrained or mixed),
``DecomposeSystem`` (a reference to a composed system), ``ComposeResource`` (a new
``Expansion`` ResourceBlock from the free device blocks of its
``Links.SupplyingResourceBlocks``; it then joins systems as one block) and
``DecomposeResource`` (a reference to a block: one in a system is detached from it, a free
Expansion block is dissolved). ``RegisterResourceBlock`` and ``OEM`` stanzas are refused
with ``UnableToProcessStanzaRequest``.
"""

from __future__ import annotations

import copy
import uuid
from typing import Any

from ..composition import planner
from ..composition.batch import View
from ..composition.messages import COMPOSITION
from ..protocol.errors import RedfishError
from ..protocol.fields import Bool, Str, shown_value
from ..protocol.messages import message
from ..store import Transaction
from . import reservations, uris
from .context import Ctx
from .inventory import composed_system_doc, system_request
from .kind import ActionResult, Kind

ACTION = "CompositionService.Compose"
ACTION_INFO = uris.COMPOSITION_SERVICE + "/ComposeActionInfo"
REQUEST_TYPES = ("Preview", "PreviewReserve", "Apply")
STANZA_TYPES = ("ComposeSystem", "DecomposeSystem", "ComposeResource", "DecomposeResource",
                "RegisterResourceBlock", "OEM")
SUPPORTED = ("ComposeSystem", "DecomposeSystem", "ComposeResource", "DecomposeResource")
PARAMS = ("RequestFormat", "RequestType", "Manifest", "ReservationId")


def action_info_doc() -> dict[str, Any]:
    return {
        "@odata.id": ACTION_INFO,
        "@odata.type": "#ActionInfo.v1_5_0.ActionInfo",
        "Id": "ComposeActionInfo",
        "Name": "Parameters of the Compose action",
        "Parameters": [
            {"Name": "RequestFormat", "Required": False, "DataType": "String",
             "AllowableValues": ["Manifest"]},
            {"Name": "RequestType", "Required": True, "DataType": "String",
             "AllowableValues": list(REQUEST_TYPES)},
            {"Name": "Manifest", "Required": False, "DataType": "Object",
             "ObjectDataType": "#Manifest.v1_1_2.Manifest"},
            {"Name": "ReservationId", "Required": False, "DataType": "String"},
        ],
    }


def compose_action() -> dict[str, Any]:
    return {"#CompositionService.Compose": {
        "target": f"{uris.COMPOSITION_SERVICE}/Actions/{ACTION}",
        "@Redfish.ActionInfo": ACTION_INFO,
    }}


def _param_error(key: str, *args: Any) -> RedfishError:
    return RedfishError.of(400, key, *args)


def _validate(body: dict[str, Any]) -> tuple[str, dict[str, Any] | None, Any]:
    for key in body:
        if key not in PARAMS and not key.startswith("@"):
            raise _param_error("ActionParameterUnknown", ACTION, key)
    fmt = body.get("RequestFormat", "Manifest")
    if fmt != "Manifest":
        raise _param_error("ActionParameterValueNotInList", shown_value(fmt),
                           "RequestFormat", ACTION)
    if "RequestType" not in body:
        raise _param_error("ActionParameterMissing", ACTION, "RequestType")
    kind = body["RequestType"]
    if kind not in REQUEST_TYPES:
        raise _param_error("ActionParameterValueNotInList", shown_value(kind),
                           "RequestType", ACTION)
    reservation = body.get("ReservationId")
    if reservation is not None:
        if not isinstance(reservation, str):
            raise _param_error("ActionParameterValueTypeError", shown_value(reservation),
                               "ReservationId", ACTION)
        if kind != "Apply":
            raise _param_error("ActionParameterValueError", "ReservationId", ACTION)
    manifest = body.get("Manifest")
    if manifest is None:
        if reservation is None:
            raise _param_error("ActionParameterMissing", ACTION, "Manifest")
        return kind, None, reservation
    if not isinstance(manifest, dict):
        raise _param_error("ActionParameterValueTypeError", shown_value(manifest),
                           "Manifest", ACTION)
    stanzas = manifest.get("Stanzas")
    if not isinstance(stanzas, list) or not stanzas:
        raise RedfishError.of(400, "EmptyManifest", registry=COMPOSITION,
                              related=["/Manifest/Stanzas"])
    for i, stanza in enumerate(stanzas):
        where = f"/Manifest/Stanzas/{i}"
        if not isinstance(stanza, dict):
            raise _param_error("ActionParameterValueTypeError", shown_value(stanza),
                               f"Manifest{where[9:]}", ACTION)
        if stanza.get("StanzaType") not in STANZA_TYPES:
            raise RedfishError.of(400, "PropertyValueNotInList",
                                  shown_value(stanza.get("StanzaType")), "StanzaType",
                                  related=[f"{where}/StanzaType"])
        if not isinstance(stanza.get("Request"), dict) or not stanza["Request"]:
            raise RedfishError.of(400, "EmptyManifest", registry=COMPOSITION,
                                  related=[f"{where}/Request"])
        if "StanzaId" in stanza and not isinstance(stanza["StanzaId"], str):
            raise RedfishError.of(400, "PropertyValueTypeError",
                                  shown_value(stanza["StanzaId"]), "StanzaId",
                                  related=[f"{where}/StanzaId"])
    return kind, manifest, reservation


def _stanza_id(stanza: dict[str, Any], i: int) -> str:
    return stanza.get("StanzaId") or f"Stanza{i + 1}"


def _reference(request: dict[str, Any], prefix: str) -> str:
    uri = request.get("@odata.id")
    if not isinstance(uri, str) or not uri.rstrip("/").startswith(prefix + "/"):
        raise RedfishError.of(400, "PropertyValueTypeError", shown_value(uri), "@odata.id",
                              related=["/Request/@odata.id"])
    return uri.rstrip("/")


def _carry_out(view: View, stanza: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """One stanza against the view: (its Response, its request resolved to blocks)."""
    kind, request = stanza["StanzaType"], stanza["Request"]
    if kind not in SUPPORTED:
        raise RedfishError.of(400, "UnableToProcessStanzaRequest", kind,
                              _stanza_id(stanza, 0), registry=COMPOSITION)
    if kind == "ComposeSystem":
        system_request(request, name_required=False)
        uri = f"{uris.SYSTEMS}/composed-{uuid.uuid4().hex[:8]}"
        doc = view.compose(uri, request, composed_system_doc)
        resolved = {"Links": {"ResourceBlocks": doc["Links"]["ResourceBlocks"]}}
        if "Name" in request:
            resolved["Name"] = request["Name"]
        return doc, {**stanza, "Request": resolved}
    if kind == "ComposeResource":
        from .pool import expansion_block_doc  # pool imports this module

        uri = f"{uris.RESOURCE_BLOCKS}/expansion-{uuid.uuid4().hex[:8]}"
        return view.compose_resource(uri, request, expansion_block_doc), stanza
    if kind == "DecomposeSystem":
        uri = _reference(request, uris.SYSTEMS)
        view.decompose(uri)
    else:  # DecomposeResource: out of its system, or a free Expansion block dissolved
        uri = _reference(request, uris.RESOURCE_BLOCKS)
        block = view.blocks.get(uri)
        if block is None:
            raise RedfishError.of(400, "ResourceBlockNotFound", uri.rsplit("/", 1)[1],
                                  registry=COMPOSITION)
        systems = planner.systems_of(block)
        if systems and not planner.links_of(block).get("ConsumingResourceBlocks"):
            view.detach(systems[0], uri)
        elif "Expansion" in planner.block_types(block):
            view.dissolve(uri)
        else:
            raise RedfishError.of(400, "ResourceBlockInvalid", planner.doc_id(block),
                                  registry=COMPOSITION)
    return {"@odata.id": uri, "@Message.ExtendedInfo": [message("Success")]}, stanza


def _stanza_failed(stanza: dict[str, Any], i: int, e: RedfishError) -> RedfishError:
    head = message("UnableToProcessStanzaRequest", stanza.get("StanzaType", ""),
                   _stanza_id(stanza, i), registry=COMPOSITION)
    return RedfishError(e.status, [head, *e.messages], e.headers)


class CompositionServiceKind(Kind):
    entity = "CompositionService"
    writable = {
        "AllowOverprovisioning": Bool(),
        "ReservationDuration": Str(pattern=reservations.DURATION_PATTERN, max_length=64),
    }
    actions = {ACTION: "compose"}

    async def check_patch(self, ctx, tx, uri, old, new) -> list[dict[str, Any]]:
        value = new.get("ReservationDuration")
        if value != old.get("ReservationDuration") and not reservations.duration_s(value):
            raise RedfishError.of(400, "PropertyValueFormatError", shown_value(value),
                                  "ReservationDuration", related=["/ReservationDuration"])
        return []

    async def compose(self, ctx: Ctx, uri: str, body: dict[str, Any]) -> ActionResult:
        kind, manifest, reservation_id = _validate(body)
        mine: frozenset[str] = frozenset()
        entry = None
        if reservation_id is not None:
            entry = reservations.find(ctx.store, reservation_id, ctx.actor)
            if entry is None:
                raise reservations.not_found(reservation_id)
            manifest = entry.doc.get("Manifest")  # resolved to the blocks reserved
            try:  # ours always is valid; a served mockup's reservation need not be
                _validate({"RequestType": "Apply", "Manifest": manifest})
            except RedfishError:
                raise reservations.not_found(reservation_id) from None
            mine = frozenset(planner.link_ids(entry.doc.get("ReservedResourceBlocks")))
        assert manifest is not None
        stanzas = manifest["Stanzas"]
        answered: list[dict[str, Any]] = []
        resolved: list[dict[str, Any]] = []
        preview = kind != "Apply"

        def plan(view: View) -> None:
            for i, stanza in enumerate(stanzas):
                try:
                    response, done = _carry_out(view, stanza)
                except RedfishError as e:
                    if not preview:
                        raise _stanza_failed(stanza, i, e) from None
                    answered.append({**stanza, "Response": {"error": {
                        "code": e.messages[0]["MessageId"],
                        "message": e.messages[0]["Message"],
                        "@Message.ExtendedInfo": e.messages}}})
                    continue
                answered.append({**stanza, "Response": response})
                resolved.append(done)

        created: dict[str, str] = {}

        def keep_reservation(tx: Transaction, view: View) -> None:
            if kind != "PreviewReserve":
                return
            failed = [s for s in answered if "error" in s["Response"]]
            if failed:
                i = answered.index(failed[0])
                error = failed[0]["Response"]["error"]
                raise RedfishError(409, [
                    message("UnableToProcessStanzaRequest", failed[0]["StanzaType"],
                            _stanza_id(failed[0], i), registry=COMPOSITION),
                    *error["@Message.ExtendedInfo"]])
            blocks = [u for u, doc in view.batch.after.items()
                      if planner.status_of(doc).get("CompositionState")
                      in planner.COMPOSED_STATES and u not in view.batch.deleted]
            created["id"] = reservations.reserve(
                tx, ctx.store, ctx.actor, blocks,
                copy.deepcopy({**manifest, "Stanzas": resolved}))

        def end_reservation(tx: Transaction) -> None:
            if entry is not None:
                reservations.release(tx, ctx.store, entry.doc["@odata.id"], blocks_too=False)

        await ctx.composer.run(ctx.actor, plan, dry_run=preview, mine=mine,
                               lock=_systems_named(stanzas),
                               on_plan=keep_reservation, on_commit=end_reservation)
        if not preview:  # the systems as committed, with their ETags
            for stanza in answered:
                made = stanza["Response"].get("@odata.id")
                if stanza["StanzaType"] in ("ComposeSystem", "ComposeResource") \
                        and ctx.store.doc(made):
                    stanza["Response"] = ctx.store.doc(made)
        out: dict[str, Any] = {"RequestFormat": "Manifest", "RequestType": kind,
                               "Manifest": {**manifest, "Stanzas": answered}}
        if "id" in created:
            out["ReservationId"] = created["id"]
        return ActionResult(200, out)


def _systems_named(stanzas: list[dict[str, Any]]) -> list[str]:
    """Systems a manifest decomposes: their other operations must wait for it."""
    return [s["Request"]["@odata.id"].rstrip("/") for s in stanzas
            if s.get("StanzaType") == "DecomposeSystem"
            and isinstance(s.get("Request", {}).get("@odata.id"), str)]


KINDS = [CompositionServiceKind()]
