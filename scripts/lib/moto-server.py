"""The test bed's AWS emulator: moto's server, with one gap closed where moto 5.2.5 does
not model AWS.

* Organizations RegisterDelegatedAdministrator refuses cloudtrail.amazonaws.com ("You
  specified an unrecognized service principal"); AWS lets the management account register a
  CloudTrail delegated administrator (CloudTrail user guide, "Add a CloudTrail delegated
  administrator"). The hub's delegated-administrator setup needs it.
* A member account's ListDelegatedAdministrators and ListAWSServiceAccessForOrganization
  answer from that account's own, empty, state; AWS answers for the organisation (moto
  already does so for DescribeOrganization and ListRoots). A delegated administrator
  reads both.
* S3 evaluates a bucket policy's statements without their conditions, so the archive's
  DenyInsecureTransport (Deny s3:* when aws:SecureTransport is false) refuses every object
  request. The emulator's plain HTTP on loopback stands in for AWS's HTTPS endpoints (the
  SDK reaches AWS over TLS only), so a request here is evaluated as a secure one: that
  statement does not apply (IAM user guide, "AWS global condition context keys",
  aws:SecureTransport). Every other statement is evaluated as moto does.
* DynamoDB's TransactWriteItems snapshots each table it touches with a deep copy, once per
  action (up to 100 copies of the whole table per call), while the server's other request
  threads write to the same table: "dictionary changed size during iteration", HTTP 500,
  under any concurrency. AWS isolates transactions itself (DynamoDB developer guide,
  "Isolation levels for DynamoDB transactions": serializable; a conflicting request fails
  with TransactionConflict). Here DynamoDB requests run one at a time, and a transaction
  snapshots each table once.

Usage: python moto-server.py [moto_server arguments] (e.g. -H 127.0.0.1 -p PORT)
"""
import copy
import json
import sys
import threading
import types

import moto.dynamodb.models as dynamodb_models
import moto.dynamodb.responses as dynamodb_responses
import moto.organizations.models as organizations
import moto.s3.models as s3
from moto.server import main

SERVICES = organizations.FakeDelegatedAdministrator.SUPPORTED_SERVICES
if "cloudtrail.amazonaws.com" not in SERVICES:
    SERVICES.append("cloudtrail.amazonaws.com")


def _for_the_organisation(name):
    original = getattr(organizations.OrganizationsBackend, name)

    def method(self, *args, **kwargs):
        masters = organizations.organizations_backends.master_accounts
        if self.org is None and self.account_id in masters:
            master, partition = masters[self.account_id]
            backend = organizations.organizations_backends[master][partition]
            return getattr(backend, name)(*args, **kwargs)
        return original(self, *args, **kwargs)

    setattr(organizations.OrganizationsBackend, name, method)


for _name in (
    "list_delegated_administrators",
    "list_aws_service_access_for_organization",
):
    _for_the_organisation(_name)

def _insecure_transport_only(statement):
    condition = statement.get("Condition")
    return (
        statement.get("Effect") == "Deny"
        and condition == {"Bool": {"aws:SecureTransport": "false"}}
    )


_get_permission = s3.FakeBucket.get_permission


def _get_permission_over_tls(self, action, resource):
    if self.policy is None:
        return _get_permission(self, action, resource)
    try:
        policy = json.loads(self.policy.decode())
    except ValueError:
        return _get_permission(self, action, resource)
    statements = policy.get("Statement", [])
    if isinstance(statements, dict):
        statements = [statements]
    kept = [s for s in statements if not _insecure_transport_only(s)]
    if len(kept) == len(statements):
        return _get_permission(self, action, resource)
    original = self.policy
    self.policy = json.dumps(dict(policy, Statement=kept)).encode()
    try:
        return _get_permission(self, action, resource)
    finally:
        self.policy = original


s3.FakeBucket.get_permission = _get_permission_over_tls

_dynamodb = threading.Lock()
_dynamodb_call_action = dynamodb_responses.DynamoHandler.call_action


def _dynamodb_one_at_a_time(self):
    with _dynamodb:
        return _dynamodb_call_action(self)


dynamodb_responses.DynamoHandler.call_action = _dynamodb_one_at_a_time

_transact_write_items = dynamodb_models.DynamoDBBackend.transact_write_items


def _transact_snapshotting_once(self, transact_items):
    # Runs under _dynamodb (every DynamoDB request does), so swapping the module's `copy`
    # for the length of the call is seen by this call alone.
    snapshots = {}

    def deepcopy(value, memo=None):
        if not isinstance(value, dynamodb_models.Table):
            return copy.deepcopy(value, memo)
        if id(value) not in snapshots:
            snapshots[id(value)] = (value, copy.deepcopy(value, memo))
        return snapshots[id(value)][1]

    dynamodb_models.copy = types.SimpleNamespace(deepcopy=deepcopy)
    try:
        return _transact_write_items(self, transact_items)
    finally:
        dynamodb_models.copy = copy


dynamodb_models.DynamoDBBackend.transact_write_items = _transact_snapshotting_once

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
