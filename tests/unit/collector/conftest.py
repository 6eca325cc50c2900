from tests.unit.collector.fixtures import app, auth, ccfg, cdb, client, token  # noqa: F401
