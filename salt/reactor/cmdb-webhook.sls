#!py
"""Reactor for CMDB change webhooks: hand the hook event to the ``cmdb.hook`` runner.

Map it to the tag salt-api gives posts to ``/hook/cmdb`` (master config)::

    reactor:
      - salt/netapi/hook/cmdb:
        - salt://reactor/cmdb-webhook.sls

This file decides nothing. The runner verifies the HMAC signature of the raw body,
refuses stale or replayed hooks and unknown minions, then invalidates the minion's
cached pillar, refreshes it and starts ``state.apply``. It is written for the py
renderer so that the body reaches the runner byte for byte: a Jinja/YAML round trip
may re-encode characters, and the signature covers the exact bytes.
"""


def run():
    event = data  # noqa: F821 - the reactor passes the event's data as `data`
    arguments = [
        {"body": event.get("body", "")},
        {"headers": event.get("headers", {})},
        {"tag": tag},  # noqa: F821 - and its tag as `tag`
    ]
    reaction = {"runner.cmdb.hook": [{"args": arguments}]}
    return {"cmdb-webhook-verify-and-apply": reaction}
