async def test_service_root_is_public(client):
    resp = await client.get("/redfish/v1/")
    assert resp.status == 200
    body = await resp.json()
    assert body["@odata.id"] == "/redfish/v1/"
    assert body["Links"]["Sessions"] == {"@odata.id": "/redfish/v1/SessionService/Sessions"}


async def test_login_and_browse(client, admin):
    resp = await client.get("/redfish/v1/AccountService/Accounts", headers=admin)
    assert resp.status == 200
    body = await resp.json()
    assert body["Members@odata.count"] == 1
