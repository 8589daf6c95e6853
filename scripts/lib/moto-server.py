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

Usage: python moto-server.py [moto_server arguments] (e.g. -H 127.0.0.1 -p PORT)
"""
import sys

import moto.organizations.models as organizations
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

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
