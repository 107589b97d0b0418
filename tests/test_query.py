"""Query parameters (DSP0266 7.3) on the in-process service."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from .conftest import basic
from .test_protocol import (
    ACCOUNT_SERVICE,
    ACCOUNTS,
    ADMIN_ACCOUNT,
    ROLES,
    SERVICE_ROOT,
    SESSIONS,
    cheap_password_hashing,  # noqa: F401 (autouse fixture)
    expect_error,
    get_json,
)


def is_ref(value) -> bool:
    return isinstance(value, dict) and set(value) == {"@odata.id"}


OPTIONAL_ANNOTATIONS = {"@odata.context", "@odata.etag"}


def props(body: dict) -> set[str]:
    """The keys of a body, less the annotations $select may add."""
    return set(body) - OPTIONAL_ANNOTATIONS


def q(uri: str, query: str) -> str:
    """``uri?query`` with the query percent-encoded the way a client sends it."""
    return f"{uri}?{quote(query, safe='=&$')}"


@pytest.fixture
async def people(make_user):
    """Four accounts: admin (1), alice Operator (2), bob ReadOnly (3), carol ReadOnly (4)."""
    out = {"admin": ADMIN_ACCOUNT}
    for name, role in (("alice", "Operator"), ("bob", "ReadOnly"), ("carol", "ReadOnly")):
        _, uri = await make_user(name, role)
        out[name] = uri
    return out


async def member_ids(client, admin, query: str) -> list[str]:
    body = await get_json(client, q(ACCOUNTS, query), admin)
    return [m["@odata.id"] for m in body["Members"]]


# -- ProtocolFeaturesSupported --------------------------------------------------------------


async def test_features_advertised(client):
    root = await get_json(client, SERVICE_ROOT)
    features = root["ProtocolFeaturesSupported"]
    assert features["ExpandQuery"]["ExpandAll"] is True
    assert features["ExpandQuery"]["Links"] is True
    assert features["ExpandQuery"]["NoLinks"] is True
    assert features["ExpandQuery"]["Levels"] is True
    assert features["ExpandQuery"]["MaxLevels"] >= 1
    for key in ("SelectQuery", "FilterQuery", "OnlyMemberQuery", "ExcerptQuery", "TopSkipQuery"):
        assert features[key] is True, key


# -- $select -----------------------------------------------------------------------------


async def test_select_top_level(client, admin):
    body = await get_json(client, q(ACCOUNT_SERVICE, "$select=MinPasswordLength,Accounts"), admin)
    assert props(body) == {"@odata.id", "@odata.type", "MinPasswordLength", "Accounts"}
    full = await get_json(client, ACCOUNT_SERVICE, admin)
    assert body["MinPasswordLength"] == full["MinPasswordLength"]
    assert body["Accounts"] == {"@odata.id": ACCOUNTS}


async def test_select_nested(client, admin):
    body = await get_json(client, q(ACCOUNT_SERVICE, "$select=Status/Health"), admin)
    assert body["Status"] == {"Health": "OK"}
    assert props(body) == {"@odata.id", "@odata.type", "Status"}


async def test_select_unknown_property_is_omitted(client, admin):
    body = await get_json(client, q(ACCOUNT_SERVICE, "$select=NoSuchProperty,Id"), admin)
    assert props(body) == {"@odata.id", "@odata.type", "Id"}


async def test_select_bad_syntax_is_400(client, admin):
    resp = await client.get(q(ACCOUNT_SERVICE, "$select=,,"), headers=admin)
    await expect_error(resp, 400, "QueryParameterValueFormatError")


async def test_select_on_collection(client, admin, people):
    body = await get_json(client, q(ACCOUNTS, "$select=Name"), admin)
    assert props(body) == {"@odata.id", "@odata.type", "Name"}


# -- $expand -------------------------------------------------------------------------------


async def test_expand_dot_skips_links(client, admin):
    body = await get_json(client, q(SERVICE_ROOT, "$expand=."), admin)
    assert body["AccountService"]["@odata.id"] == ACCOUNT_SERVICE
    assert "MinPasswordLength" in body["AccountService"]
    assert is_ref(body["Links"]["Sessions"])
    # One level only: the expanded AccountService keeps its own links as references.
    assert is_ref(body["AccountService"]["Accounts"])


async def test_expand_tilde_only_links(client, admin):
    body = await get_json(client, q(SERVICE_ROOT, "$expand=~"), admin)
    assert is_ref(body["AccountService"])
    assert is_ref(body["SessionService"])
    sessions = body["Links"]["Sessions"]
    assert sessions["@odata.id"] == SESSIONS
    assert "Members" in sessions


async def test_expand_star_expands_both(client, admin):
    body = await get_json(client, q(SERVICE_ROOT, "$expand=*"), admin)
    assert "MinPasswordLength" in body["AccountService"]
    assert "Members" in body["Links"]["Sessions"]


async def test_expand_levels(client, admin):
    one = await get_json(client, q(SERVICE_ROOT, "$expand=.($levels=1)"), admin)
    assert is_ref(one["AccountService"]["Accounts"])
    two = await get_json(client, q(SERVICE_ROOT, "$expand=.($levels=2)"), admin)
    accounts = two["AccountService"]["Accounts"]
    assert accounts["@odata.id"] == ACCOUNTS
    assert accounts["Members@odata.count"] == 1
    # Third level not reached.
    assert is_ref(accounts["Members"][0])
    three = await get_json(client, q(SERVICE_ROOT, "$expand=.($levels=3)"), admin)
    member = three["AccountService"]["Accounts"]["Members"][0]
    assert member["UserName"] == "admin"
    assert member["Password"] is None
    # '.' never follows Links, at any level.
    assert is_ref(member["Links"]["Role"])


async def test_expand_collection_members(client, admin, people):
    body = await get_json(client, q(ACCOUNTS, "$expand=."), admin)
    assert body["Members@odata.count"] == 4
    names = sorted(m["UserName"] for m in body["Members"])
    assert names == ["admin", "alice", "bob", "carol"]
    assert all(m["Password"] is None for m in body["Members"])
    assert all(is_ref(m["Links"]["Role"]) for m in body["Members"])
    star = await get_json(client, q(ACCOUNTS, "$expand=*($levels=2)"), admin)
    roles = {m["UserName"]: m["Links"]["Role"] for m in star["Members"]}
    assert roles["alice"]["RoleId"] == "Operator"
    assert roles["alice"]["AssignedPrivileges"] == ["Login", "ConfigureComponents", "ConfigureSelf"]
    tilde = await get_json(client, q(ACCOUNTS, "$expand=~"), admin)
    assert all(is_ref(m) for m in tilde["Members"])


async def test_expand_links_of_a_resource(client, admin):
    body = await get_json(client, q(ADMIN_ACCOUNT, "$expand=~"), admin)
    assert body["Links"]["Role"]["RoleId"] == "Administrator"
    dot = await get_json(client, q(ADMIN_ACCOUNT, "$expand=."), admin)
    assert is_ref(dot["Links"]["Role"])
    plain = await get_json(client, ADMIN_ACCOUNT, admin)
    assert {k: v for k, v in dot.items() if k != "Links"} == {
        k: v for k, v in plain.items() if k != "Links"
    }


async def test_expand_respects_privileges(client, admin, people, make_user):
    headers, own = await make_user("reader", "ReadOnly")
    body = await get_json(client, q(ACCOUNTS, "$expand=."), headers)
    expanded = [m for m in body["Members"] if not is_ref(m)]
    assert [m["@odata.id"] for m in expanded] == [own]
    assert "admin" not in str(body["Members"])


async def test_expand_levels_out_of_range(client, admin):
    for levels in ("0", "7", "100"):
        resp = await client.get(q(SERVICE_ROOT, f"$expand=.($levels={levels})"), headers=admin)
        await expect_error(resp, 400, "QueryParameterOutOfRange")
    resp = await client.get(q(SERVICE_ROOT, "$expand=.($levels=6)"), headers=admin)
    assert resp.status == 200


async def test_expand_bad_value(client, admin):
    for value in ("", "x", "..", ".($levels=a)", ".($levels=2", "*,~"):
        resp = await client.get(q(SERVICE_ROOT, f"$expand={value}"), headers=admin)
        await expect_error(resp, 400)


# -- $filter ------------------------------------------------------------------------------


async def test_filter_eq_and_ne(client, admin, people):
    assert await member_ids(client, admin, "$filter=RoleId eq 'ReadOnly'") == [
        people["bob"], people["carol"]
    ]
    got = await member_ids(client, admin, "$filter=RoleId ne 'ReadOnly'")
    assert got == [people["admin"], people["alice"]]


async def test_filter_count_is_filtered_total(client, admin, people):
    body = await get_json(client, q(ACCOUNTS, "$filter=RoleId eq 'ReadOnly'"), admin)
    assert body["Members@odata.count"] == 2
    assert len(body["Members"]) == 2


async def test_filter_gt_on_strings(client, admin, people):
    # UserName ordering: admin < alice < bob < carol
    got = await member_ids(client, admin, "$filter=UserName gt 'alice'")
    assert got == [people["bob"], people["carol"]]
    got = await member_ids(client, admin, "$filter=UserName le 'alice'")
    assert got == [people["admin"], people["alice"]]


async def test_filter_and_or_not_parentheses(client, admin, people):
    got = await member_ids(client, admin,
                           "$filter=RoleId eq 'ReadOnly' and UserName eq 'bob'")
    assert got == [people["bob"]]
    got = await member_ids(client, admin,
                           "$filter=RoleId eq 'Operator' or UserName eq 'carol'")
    assert got == [people["alice"], people["carol"]]
    got = await member_ids(client, admin, "$filter=not (RoleId eq 'ReadOnly')")
    assert got == [people["admin"], people["alice"]]
    got = await member_ids(
        client, admin,
        "$filter=(RoleId eq 'ReadOnly' and UserName ne 'bob') or UserName eq 'admin'",
    )
    assert got == [people["admin"], people["carol"]]
    got = await member_ids(
        client, admin,
        "$filter=RoleId eq 'ReadOnly' and (UserName eq 'bob' or UserName eq 'admin')",
    )
    assert got == [people["bob"]]


async def test_filter_path_and_booleans(client, admin, people):
    got = await member_ids(
        client, admin, "$filter=Links/Role/@odata.id eq '/redfish/v1/AccountService/Roles/Operator'"
    )
    assert got == [people["alice"]]
    got = await member_ids(client, admin, "$filter=Enabled eq true and Locked eq false")
    assert len(got) == 4
    got = await member_ids(client, admin, "$filter=Enabled eq false")
    assert got == []


async def test_filter_matching_nothing(client, admin, people):
    body = await get_json(client, q(ACCOUNTS, "$filter=UserName eq 'nobody'"), admin)
    assert body["Members"] == []
    assert body["Members@odata.count"] == 0


async def test_filter_respects_privileges(client, people):
    body = await get_json(client, q(ACCOUNTS, "$filter=UserName eq 'admin'"),
                          basic("bob", "User-passw0rd"))
    assert body["Members"] == []


async def test_filter_bad_syntax_is_400(client, admin):
    for expr in ("RoleId eq", "RoleId equals 'x'", "(RoleId eq 'x'", "RoleId eq 'x')", "eq 'x'",
                 "RoleId eq 'x' and", "RoleId eq 'unterminated", "RoleId eq Operator", ""):
        resp = await client.get(q(ACCOUNTS, f"$filter={expr}"), headers=admin)
        await expect_error(resp, 400, "QueryParameterValueFormatError")


# -- $top / $skip ---------------------------------------------------------------------------


async def test_top_skip_paging(client, admin, people):
    everyone = await member_ids(client, admin, "")
    assert len(everyone) == 4
    body = await get_json(client, q(ACCOUNTS, "$top=2"), admin)
    assert [m["@odata.id"] for m in body["Members"]] == everyone[:2]
    assert body["Members@odata.count"] == 4
    next_link = body["Members@odata.nextLink"]
    assert next_link.startswith(ACCOUNTS + "?")
    page2 = await get_json(client, next_link, admin)
    assert [m["@odata.id"] for m in page2["Members"]] == everyone[2:]
    assert page2["Members@odata.count"] == 4
    assert "Members@odata.nextLink" not in page2


async def test_follow_next_links_to_the_end(client, admin, people):
    everyone = await member_ids(client, admin, "")
    seen: list[str] = []
    link = q(ACCOUNTS, "$top=1")
    for _ in range(10):
        body = await get_json(client, link, admin)
        assert body["Members@odata.count"] == 4
        seen += [m["@odata.id"] for m in body["Members"]]
        link = body.get("Members@odata.nextLink")
        if link is None:
            break
    assert seen == everyone


async def test_skip(client, admin, people):
    everyone = await member_ids(client, admin, "")
    body = await get_json(client, q(ACCOUNTS, "$skip=3"), admin)
    assert [m["@odata.id"] for m in body["Members"]] == everyone[3:]
    assert body["Members@odata.count"] == 4
    assert "Members@odata.nextLink" not in body
    body = await get_json(client, q(ACCOUNTS, "$skip=10"), admin)
    assert body["Members"] == []
    assert body["Members@odata.count"] == 4


async def test_top_larger_than_collection(client, admin, people):
    body = await get_json(client, q(ACCOUNTS, "$top=50"), admin)
    assert len(body["Members"]) == 4
    assert "Members@odata.nextLink" not in body


async def test_filter_with_paging(client, admin, people):
    body = await get_json(client, q(ACCOUNTS, "$filter=RoleId ne 'Administrator'&$top=1"), admin)
    assert [m["@odata.id"] for m in body["Members"]] == [people["alice"]]
    assert body["Members@odata.count"] == 3
    page2 = await get_json(client, body["Members@odata.nextLink"], admin)
    assert [m["@odata.id"] for m in page2["Members"]] == [people["bob"]]
    assert page2["Members@odata.count"] == 3


async def test_top_skip_bad_values(client, admin):
    for query in ("$top=-1", "$top=abc", "$skip=-2", "$skip=1.5", "$top="):
        resp = await client.get(q(ACCOUNTS, query), headers=admin)
        await expect_error(resp, 400)


# -- only / excerpt -------------------------------------------------------------------------


async def test_only_with_one_member_returns_it(client, admin):
    body = await get_json(client, ACCOUNTS + "?only", admin)
    assert body["@odata.id"] == ADMIN_ACCOUNT
    assert body["UserName"] == "admin"


async def test_only_with_several_members_returns_collection(client, admin):
    body = await get_json(client, ROLES + "?only", admin)
    assert body["@odata.id"] == ROLES
    assert body["Members@odata.count"] == 3


async def test_only_with_value_is_400(client, admin):
    resp = await client.get(ACCOUNTS + "?only=foo", headers=admin)
    await expect_error(resp, 400, "QueryParameterValueFormatError")


async def test_only_combined_with_other_parameter_is_400(client, admin):
    for extra in ("$select=Name", "$top=1", "$expand=.", "excerpt"):
        resp = await client.get(f"{ACCOUNTS}?only&{extra}", headers=admin)
        await expect_error(resp, 400, "QueryCombinationInvalid")


async def test_excerpt(client, admin):
    body = await get_json(client, ACCOUNT_SERVICE + "?excerpt", admin)
    full = await get_json(client, ACCOUNT_SERVICE, admin)
    assert body["@odata.id"] == ACCOUNT_SERVICE
    assert set(body) < set(full)
    for k, v in body.items():
        assert full[k] == v


async def test_excerpt_with_value_is_400(client, admin):
    resp = await client.get(ACCOUNT_SERVICE + "?excerpt=foo", headers=admin)
    await expect_error(resp, 400)


# -- unknown and unsupported parameters -------------------------------------------------------


async def test_unsupported_dollar_parameter_is_501(client, admin):
    resp = await client.get(SERVICE_ROOT + "?$rpvunknown=1", headers=admin)
    body = await expect_error(resp, 501, "QueryParameterUnsupported")
    assert body["error"]["@Message.ExtendedInfo"][0]["MessageArgs"] == ["$rpvunknown"]
    resp = await client.get(ACCOUNTS + "?$orderby=Id", headers=admin)
    await expect_error(resp, 501, "QueryParameterUnsupported")


async def test_unknown_plain_parameter_is_ignored(client, admin):
    plain = await get_json(client, ACCOUNTS, admin)
    body = await get_json(client, ACCOUNTS + "?rpvunknown=1&foo", admin)
    assert body == plain


async def test_repeated_parameter_is_400(client, admin):
    resp = await client.get(ACCOUNTS + "?$top=1&$top=2", headers=admin)
    await expect_error(resp, 400)


async def test_query_drops_etag(client, admin):
    resp = await client.get(q(ACCOUNT_SERVICE, "$select=Id"), headers=admin)
    assert resp.status == 200
    full = await client.get(ACCOUNT_SERVICE, headers=admin)
    assert resp.headers.get("ETag") != full.headers["ETag"]


async def test_top_zero_next_link_makes_progress(client, admin, people):
    body = await get_json(client, q(ACCOUNTS, "$top=0"), admin)
    assert body["Members"] == []
    assert body["Members@odata.count"] == 4
    # A client following nextLinks must reach the end: a nextLink may not repeat the page.
    link = body.get("Members@odata.nextLink")
    seen = [q(ACCOUNTS, "$top=0")]
    for _ in range(6):
        if link is None:
            break
        assert link not in seen, f"nextLink {link} repeats a page already fetched"
        seen.append(link)
        link = (await get_json(client, link, admin)).get("Members@odata.nextLink")
    assert link is None


async def test_expand_then_select(client, admin):
    body = await get_json(client, q(SERVICE_ROOT, "$expand=.&$select=AccountService,Id"), admin)
    assert props(body) == {"@odata.id", "@odata.type", "AccountService", "Id"}
    assert body["AccountService"]["MinPasswordLength"] >= 1


async def test_only_serves_the_member_headers(client, admin):
    member = await client.get(ADMIN_ACCOUNT, headers=admin)
    resp = await client.get(ACCOUNTS + "?only", headers=admin)
    assert resp.status == 200
    assert resp.headers.get("ETag") == member.headers["ETag"]
    assert resp.headers.get("Link") == member.headers["Link"]
    assert await resp.read() == await member.read()
