"""Well-known URIs of the service tree."""

ROOT = "/redfish/v1"
SERVICE_ROOT = "/redfish/v1/"  # the service root's @odata.id keeps its trailing slash
ODATA = "/redfish/v1/odata"
METADATA = "/redfish/v1/$metadata"

ACCOUNT_SERVICE = "/redfish/v1/AccountService"
ACCOUNTS = ACCOUNT_SERVICE + "/Accounts"
ROLES = ACCOUNT_SERVICE + "/Roles"
PRIVILEGE_MAP = ACCOUNT_SERVICE + "/PrivilegeMap"
SESSION_SERVICE = "/redfish/v1/SessionService"
SESSIONS = SESSION_SERVICE + "/Sessions"
MANAGERS = "/redfish/v1/Managers"
MANAGER_ID = "Composer"
MANAGER = MANAGERS + "/" + MANAGER_ID
NETWORK_PROTOCOL = MANAGER + "/NetworkProtocol"
SYSTEMS = "/redfish/v1/Systems"
CHASSIS = "/redfish/v1/Chassis"
TASK_SERVICE = "/redfish/v1/TaskService"
TASKS = TASK_SERVICE + "/Tasks"
REGISTRIES = "/redfish/v1/Registries"
COMPOSITION_SERVICE = "/redfish/v1/CompositionService"
RESOURCE_BLOCKS = COMPOSITION_SERVICE + "/ResourceBlocks"
JSON_SCHEMAS = "/redfish/v1/JsonSchemas"


def store_key(uri: str) -> str:
    """The key a URI has in the store (the service root is stored under ROOT + '/')."""
    return SERVICE_ROOT if uri in (ROOT, SERVICE_ROOT) else uri


def host_block_id(host_id: str) -> str:
    """The ResourceBlock that registers host server ``host_id`` with the composition."""
    return f"system-{host_id}"
